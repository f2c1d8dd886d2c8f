/**
 * The MessagePack subset Sova speaks, written by hand rather than with msgpackr:
 * rmp-serde tells a float from an integer, `bin` from an array and an int64 from a
 * uint64, and a Sova instance drops the connection on any of them. msgpackr erases
 * exactly those distinctions on decode (every number becomes a JS number) and
 * picks other encodings on encode (map16, int64, float64 above 2^32).
 *
 * The reader throws RelayError("E_DECODE") with the words rmp-serde uses, so
 * an `Error` frame reads the same as the upstream relay's.
 */
import { RelayError } from "../errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

export function decodeError(why: string): RelayError {
  return new RelayError("E_DECODE", why);
}

const EOF_MARKER = "IO error while reading marker: failed to fill whole buffer";
const EOF_DATA = "IO error while reading data: unexpected end of file";

export class MsgpackReader {
  pos = 0;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  peek(): number {
    if (this.pos >= this.bytes.length) throw decodeError(EOF_MARKER);
    return this.bytes[this.pos]!;
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw decodeError(EOF_DATA);
  }

  private u8At(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }

  private u16At(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  private u32At(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  /** Map header; anything else is "invalid type: ..., expected {expected}". */
  readMapLength(expected: string): number {
    return this.readContainerLength(0x80, 0xde, expected);
  }

  /** fix/16/32 headers: fix forms carry the length in the low nibble. */
  private readContainerLength(fix: number, marker16: number, expected: string): number {
    const m = this.peek();
    if (m >= fix && m <= fix + 0x0f) {
      this.pos++;
      return m & 0x0f;
    }
    if (m === marker16) {
      this.pos++;
      return this.u16At();
    }
    if (m === marker16 + 1) {
      this.pos++;
      return this.u32At();
    }
    throw this.invalidType(expected);
  }

  isMap(): boolean {
    const m = this.peek();
    return (m >= 0x80 && m <= 0x8f) || m === 0xde || m === 0xdf;
  }

  isArray(): boolean {
    const m = this.peek();
    return (m >= 0x90 && m <= 0x9f) || m === 0xdc || m === 0xdd;
  }

  isString(): boolean {
    const m = this.peek();
    return (m >= 0xa0 && m <= 0xbf) || m === 0xd9 || m === 0xda || m === 0xdb;
  }

  readArrayLength(expected: string): number {
    return this.readContainerLength(0x90, 0xdc, expected);
  }

  /** Consumes a nil and says so; leaves anything else in place. */
  tryNil(): boolean {
    if (this.peek() === 0xc0) {
      this.pos++;
      return true;
    }
    return false;
  }

  /** The raw UTF-8 bytes of a str (or a bin, which serde's string visitor takes too). */
  readStringBytes(expected: string): Uint8Array {
    const m = this.peek();
    let len: number;
    if (m >= 0xa0 && m <= 0xbf) {
      this.pos++;
      len = m & 0x1f;
    } else if (m === 0xd9 || m === 0xc4) {
      this.pos++;
      len = this.u8At();
    } else if (m === 0xda || m === 0xc5) {
      this.pos++;
      len = this.u16At();
    } else if (m === 0xdb || m === 0xc6) {
      this.pos++;
      len = this.u32At();
    } else {
      throw this.invalidType(expected);
    }
    this.need(len);
    const out = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  readString(expected = "a string"): string {
    const raw = this.readStringBytes(expected);
    try {
      return utf8.decode(raw);
    } catch {
      throw decodeError(`invalid type: byte array, expected ${expected}`);
    }
  }

  readBin(expected: string): Uint8Array {
    const m = this.peek();
    let len: number;
    if (m === 0xc4) {
      this.pos++;
      len = this.u8At();
    } else if (m === 0xc5) {
      this.pos++;
      len = this.u16At();
    } else if (m === 0xc6) {
      this.pos++;
      len = this.u32At();
    } else {
      throw this.invalidType(expected);
    }
    this.need(len);
    const out = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  readBool(): boolean {
    const m = this.peek();
    if (m === 0xc2 || m === 0xc3) {
      this.pos++;
      return m === 0xc3;
    }
    throw this.invalidType("a boolean");
  }

  /**
   * Any MessagePack integer whose value fits in u64, as rmp-serde reads a u64:
   * signed encodings of non-negative values are fine, floats and negatives are not.
   */
  readU64(expected = "u64"): bigint {
    const m = this.peek();
    if (m <= 0x7f) {
      this.pos++;
      return BigInt(m);
    }
    switch (m) {
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xd0:
      case 0xd1:
      case 0xd2:
        return BigInt(this.readSmallInt(expected, Number.MAX_SAFE_INTEGER));
      case 0xcf: {
        this.pos++;
        this.need(8);
        const v = this.view.getBigUint64(this.pos);
        this.pos += 8;
        return v;
      }
      case 0xd3: {
        this.pos++;
        this.need(8);
        const v = this.view.getBigInt64(this.pos);
        this.pos += 8;
        if (v < 0n) throw decodeError(`invalid value: integer \`${v}\`, expected ${expected}`);
        return v;
      }
    }
    if (m >= 0xe0) {
      this.pos++;
      throw decodeError(`invalid value: integer \`${m - 0x100}\`, expected ${expected}`);
    }
    throw this.invalidType(expected);
  }

  /** An integer that must lie in 0..max (u8, u32); 64-bit encodings included. */
  readUint(max: number, expected: string): number {
    const m = this.peek();
    if (m <= 0x7f) {
      this.pos++;
      return m;
    }
    if (m === 0xcf || m === 0xd3) {
      const v = this.readU64(expected);
      if (v > BigInt(max)) throw decodeError(`invalid value: integer \`${v}\`, expected ${expected}`);
      return Number(v);
    }
    return this.readSmallInt(expected, max);
  }

  private readSmallInt(expected: string, max: number): number {
    const m = this.peek();
    let v: number;
    switch (m) {
      case 0xcc:
        this.pos++;
        v = this.u8At();
        break;
      case 0xcd:
        this.pos++;
        v = this.u16At();
        break;
      case 0xce:
        this.pos++;
        v = this.u32At();
        break;
      case 0xd0:
        this.pos++;
        this.need(1);
        v = this.view.getInt8(this.pos);
        this.pos += 1;
        break;
      case 0xd1:
        this.pos++;
        this.need(2);
        v = this.view.getInt16(this.pos);
        this.pos += 2;
        break;
      case 0xd2:
        this.pos++;
        this.need(4);
        v = this.view.getInt32(this.pos);
        this.pos += 4;
        break;
      default:
        if (m >= 0xe0) {
          this.pos++;
          v = m - 0x100;
          break;
        }
        throw this.invalidType(expected);
    }
    if (v < 0 || v > max) throw decodeError(`invalid value: integer \`${v}\`, expected ${expected}`);
    return v;
  }

  /**
   * Skips one value of any type without recursion, so deep nesting cannot
   * overflow the stack and a huge array header with no data fails at EOF.
   */
  skip(): void {
    let pending = 1;
    while (pending > 0) {
      pending--;
      const m = this.peek();
      this.pos++;
      if (m <= 0x7f || m >= 0xe0 || m === 0xc0 || m === 0xc2 || m === 0xc3) continue;
      if (m <= 0x8f) pending += 2 * (m & 0x0f);
      else if (m <= 0x9f) pending += m & 0x0f;
      else if (m <= 0xbf) this.advance(m & 0x1f);
      else
        switch (m) {
          case 0xc4:
          case 0xd9:
            this.advance(this.u8At());
            break;
          case 0xc5:
          case 0xda:
            this.advance(this.u16At());
            break;
          case 0xc6:
          case 0xdb:
            this.advance(this.u32At());
            break;
          case 0xc7:
            this.advance(this.u8At() + 1);
            break;
          case 0xc8:
            this.advance(this.u16At() + 1);
            break;
          case 0xc9:
            this.advance(this.u32At() + 1);
            break;
          case 0xca:
            this.advance(4);
            break;
          case 0xcb:
            this.advance(8);
            break;
          case 0xcc:
          case 0xd0:
            this.advance(1);
            break;
          case 0xcd:
          case 0xd1:
            this.advance(2);
            break;
          case 0xce:
          case 0xd2:
            this.advance(4);
            break;
          case 0xcf:
          case 0xd3:
            this.advance(8);
            break;
          case 0xd4:
            this.advance(2);
            break;
          case 0xd5:
            this.advance(3);
            break;
          case 0xd6:
            this.advance(5);
            break;
          case 0xd7:
            this.advance(9);
            break;
          case 0xd8:
            this.advance(17);
            break;
          case 0xdc:
            pending += this.u16At();
            break;
          case 0xdd:
            pending += this.u32At();
            break;
          case 0xde:
            pending += 2 * this.u16At();
            break;
          case 0xdf:
            pending += 2 * this.u32At();
            break;
          default:
            throw decodeError(`invalid MessagePack marker 0x${m.toString(16)}`);
        }
    }
  }

  private advance(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** serde's "invalid type: {what is here}, expected {expected}", cursor unchanged. */
  invalidType(expected: string): RelayError {
    return decodeError(`invalid type: ${this.describeNext()}, expected ${expected}`);
  }

  /** What serde's `Unexpected` would call the value at the cursor. */
  describeNext(): string {
    const start = this.pos;
    const m = this.peek();
    try {
      if (m === 0xc0) return "unit value";
      if (m === 0xc2 || m === 0xc3) return `boolean \`${m === 0xc3}\``;
      if (m === 0xca || m === 0xcb) {
        this.pos++;
        this.need(m === 0xca ? 4 : 8);
        const f = m === 0xca ? this.view.getFloat32(this.pos) : this.view.getFloat64(this.pos);
        return `floating point \`${formatFloat(f)}\``;
      }
      if (m <= 0x7f || m >= 0xe0 || (m >= 0xcc && m <= 0xd3)) {
        return `integer \`${this.readAnyInteger()}\``;
      }
      if (this.isString()) {
        const raw = this.readStringBytes("a string");
        try {
          return `string ${JSON.stringify(utf8.decode(raw))}`;
        } catch {
          return "byte array";
        }
      }
      if (m === 0xc4 || m === 0xc5 || m === 0xc6) return "byte array";
      if (this.isArray()) return "sequence";
      if (this.isMap()) return "map";
      return "extension";
    } finally {
      this.pos = start;
    }
  }

  private readAnyInteger(): bigint {
    const m = this.peek();
    if (m >= 0xe0) {
      this.pos++;
      return BigInt(m - 0x100);
    }
    if (m === 0xd3) {
      this.pos++;
      this.need(8);
      return this.view.getBigInt64(this.pos);
    }
    if (m >= 0xd0 && m <= 0xd2) {
      const size = 1 << (m - 0xd0);
      this.pos++;
      this.need(size);
      return BigInt(size === 1 ? this.view.getInt8(this.pos) : size === 2 ? this.view.getInt16(this.pos) : this.view.getInt32(this.pos));
    }
    return this.readU64();
  }
}

function formatFloat(f: number): string {
  // Rust prints whole floats without a fraction ("1705314615000"), as JS does.
  return Number.isFinite(f) ? String(f) : f > 0 ? "inf" : f < 0 ? "-inf" : "NaN";
}

/** Encodes the way rmp-serde 1.x does: smallest integer, fixstr/str8/16/32, fixmap. */
export class MsgpackWriter {
  private buf: Uint8Array;
  private view: DataView;
  pos: number;

  /** `reserve` leaves room at the start for a frame's length prefix. */
  constructor(initialSize = 256, private readonly reserve = 4) {
    this.buf = new Uint8Array(initialSize);
    this.view = new DataView(this.buf.buffer);
    this.pos = reserve;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = Math.max(64, this.buf.length * 2);
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): this {
    this.ensure(1);
    this.buf[this.pos++] = b;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  uint(v: number | bigint): this {
    this.ensure(9);
    this.pos = writeUint(this.buf, this.view, this.pos, v);
    return this;
  }

  nil(): this {
    return this.byte(0xc0);
  }

  bool(v: boolean): this {
    return this.byte(v ? 0xc3 : 0xc2);
  }

  str(s: string): this {
    // Keys and most names are short ASCII: writing the char codes skips a TextEncoder
    // call (and its allocation) per string, which dominated encoding big instance lists.
    const n = s.length;
    if (n < 32) {
      this.ensure(1 + n);
      const buf = this.buf;
      let p = this.pos + 1;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) return this.strBytes(utf8Encoder.encode(s));
        buf[p++] = c;
      }
      buf[this.pos] = 0xa0 | n;
      this.pos = p;
      return this;
    }
    return this.strBytes(utf8Encoder.encode(s));
  }

  strBytes(bytes: Uint8Array): this {
    this.ensure(5 + bytes.length);
    this.pos = writeStrHeader(this.buf, this.view, this.pos, bytes.length);
    return this.raw(bytes);
  }

  bin(bytes: Uint8Array): this {
    const n = bytes.length;
    this.ensure(5 + n);
    if (n < 0x100) {
      this.buf[this.pos++] = 0xc4;
      this.buf[this.pos++] = n;
    } else if (n < 0x10000) {
      this.buf[this.pos++] = 0xc5;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
    return this.raw(bytes);
  }

  mapHeader(n: number): this {
    this.ensure(5);
    this.pos = writeContainerHeader(this.buf, this.view, this.pos, n, 0x80, 0xde);
    return this;
  }

  arrayHeader(n: number): this {
    this.ensure(5);
    this.pos = writeContainerHeader(this.buf, this.view, this.pos, n, 0x90, 0xdc);
    return this;
  }

  /** What was written after the reserve, as a view: valid until the next write. */
  written(): Uint8Array {
    return this.buf.subarray(this.reserve, this.pos);
  }

  /** The body alone (a copy that owns its memory). */
  body(): Uint8Array {
    return this.buf.slice(this.reserve, this.pos);
  }

  /** `[u32 length][body]`, for a writer made with the default reserve of 4. */
  frame(): Uint8Array {
    this.view.setUint32(0, this.pos - 4);
    return this.buf.subarray(0, this.pos);
  }
}

export function writeUint(buf: Uint8Array, view: DataView, pos: number, v: number | bigint): number {
  if (typeof v === "bigint") {
    if (v <= 0xffffffffn) return writeUint(buf, view, pos, Number(v));
    buf[pos] = 0xcf;
    view.setBigUint64(pos + 1, v);
    return pos + 9;
  }
  if (v < 0x80) {
    buf[pos] = v;
    return pos + 1;
  }
  if (v < 0x100) {
    buf[pos] = 0xcc;
    buf[pos + 1] = v;
    return pos + 2;
  }
  if (v < 0x10000) {
    buf[pos] = 0xcd;
    view.setUint16(pos + 1, v);
    return pos + 3;
  }
  if (v <= 0xffffffff) {
    buf[pos] = 0xce;
    view.setUint32(pos + 1, v);
    return pos + 5;
  }
  buf[pos] = 0xcf;
  view.setBigUint64(pos + 1, BigInt(v));
  return pos + 9;
}

function writeStrHeader(buf: Uint8Array, view: DataView, pos: number, n: number): number {
  if (n < 32) {
    buf[pos] = 0xa0 | n;
    return pos + 1;
  }
  if (n < 0x100) {
    buf[pos] = 0xd9;
    buf[pos + 1] = n;
    return pos + 2;
  }
  if (n < 0x10000) {
    buf[pos] = 0xda;
    view.setUint16(pos + 1, n);
    return pos + 3;
  }
  buf[pos] = 0xdb;
  view.setUint32(pos + 1, n);
  return pos + 5;
}

function writeContainerHeader(buf: Uint8Array, view: DataView, pos: number, n: number, fix: number, marker16: number): number {
  if (n < 16) {
    buf[pos] = fix | n;
    return pos + 1;
  }
  if (n < 0x10000) {
    buf[pos] = marker16;
    view.setUint16(pos + 1, n);
    return pos + 3;
  }
  buf[pos] = marker16 + 1;
  view.setUint32(pos + 1, n);
  return pos + 5;
}

export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Size of rmp-serde's encoding of a `Vec<u8>` of these values. */
function byteArraySize(values: Uint8Array): number {
  let size = values.length < 16 ? 1 : values.length < 0x10000 ? 3 : 5;
  for (let i = 0; i < values.length; i++) size += values[i]! < 0x80 ? 1 : 2;
  return size;
}

/** A `Vec<u8>` as rmp-serde writes it: an array, 0-127 as fixint, 128-255 as 0xcc XX. */
export function encodeByteArray(values: Uint8Array): Uint8Array {
  const out = new Uint8Array(byteArraySize(values));
  const view = new DataView(out.buffer);
  let pos = writeContainerHeader(out, view, 0, values.length, 0x90, 0xdc);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v >= 0x80) out[pos++] = 0xcc;
    out[pos++] = v;
  }
  return out;
}
