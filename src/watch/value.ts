/**
 * One MessagePack value, read the way rmp-serde reads it for Sova's own types,
 * into plain data: maps stay `Map`s (a key such as `__proto__` is a key, never an
 * object's internals), integers past 2^53 stay exact as `bigint`, and strings keep
 * every character they hold.
 *
 * By hand because msgpackr loses what a viewer must show: strings over 64 bytes go
 * through its module-wide TextDecoder, which drops a leading U+FEFF (the shared
 * fixture `set_script_leading_bom` comes back one character short), and its
 * recursion has no depth limit of its own. Everything here is bounded by the input:
 * a length is checked against the bytes left before anything is allocated, and
 * nesting stops at MAX_DEPTH.
 */

export type Value = null | boolean | number | bigint | Float | string | Uint8Array | Value[] | ValueMap;
export type ValueMap = Map<Value, Value>;

/**
 * A float32 or float64 on the wire, kept apart from integers: rmp-serde refuses a float where Sova wants a
 * usize (an index), and takes any number where it wants an f64.
 */
export class Float {
  constructor(readonly value: number) {}
}

/** rmp-serde itself reads 1024 levels; Sova's deepest real value (vars) is rarely past a dozen. */
export const MAX_DEPTH = 128;

export class ValueError extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Reader {
  p = 0;
  private _view: DataView | null = null;
  constructor(readonly b: Uint8Array) {}

  /** Made only for floats and 64-bit integers: a DataView per value read costs more than the rest. */
  get view(): DataView {
    this._view ??= new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength);
    return this._view;
  }

  need(n: number): number {
    if (n > this.b.length - this.p) throw new ValueError("unexpected end of data");
    const at = this.p;
    this.p += n;
    return at;
  }

  uint(size: 1 | 2 | 4): number {
    const at = this.need(size);
    const b = this.b;
    if (size === 1) return b[at]!;
    if (size === 2) return (b[at]! << 8) | b[at + 1]!;
    return b[at]! * 0x1000000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);
  }

  /** Each element or key takes at least one byte: a count past what is left cannot be real. */
  count(n: number, perItem: number): number {
    if (n * perItem > this.b.length - this.p) throw new ValueError(`length ${n} past the end of the data`);
    return n;
  }

  value(depth: number): Value {
    const m = this.b[this.need(1)]!;
    if (m <= 0x7f) return m;
    if (m >= 0xe0) return m - 0x100;
    if (m <= 0x8f) return this.map(m & 0x0f, depth);
    if (m <= 0x9f) return this.array(m & 0x0f, depth);
    if (m <= 0xbf) return this.string(m & 0x1f);
    return this.marker(m, depth);
  }

  marker(m: number, depth: number): Value {
    switch (m) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
      case 0xc5:
      case 0xc6: {
        const n = this.uint(m === 0xc4 ? 1 : m === 0xc5 ? 2 : 4);
        const at = this.need(n);
        return this.b.slice(at, at + n);
      }
      case 0xca:
        return new Float(this.view.getFloat32(this.need(4)));
      case 0xcb:
        return new Float(this.view.getFloat64(this.need(8)));
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return exact(this.view.getBigUint64(this.need(8)));
      case 0xd0:
        return (this.uint(1) << 24) >> 24;
      case 0xd1:
        return (this.uint(2) << 16) >> 16;
      case 0xd2:
        return this.uint(4) | 0;
      case 0xd3:
        return exact(this.view.getBigInt64(this.need(8)));
      case 0xd9:
        return this.string(this.uint(1));
      case 0xda:
        return this.string(this.uint(2));
      case 0xdb:
        return this.string(this.uint(4));
      case 0xdc:
        return this.array(this.uint(2), depth);
      case 0xdd:
        return this.array(this.uint(4), depth);
      case 0xde:
        return this.map(this.uint(2), depth);
      case 0xdf:
        return this.map(this.uint(4), depth);
      default:
        // 0xc1 is reserved; ext types (c7-c9, d4-d8) are nothing any of Sova's types accept.
        throw new ValueError(`unexpected marker 0x${m.toString(16)}`);
    }
  }

  string(n: number): string {
    const at = this.need(n);
    // Short ASCII (names, keys, variants) by hand: a TextDecoder call costs microseconds however short.
    if (n <= 32) {
      let ascii = true;
      for (let i = at; i < at + n; i++) if (this.b[i]! >= 0x80) ascii = false;
      if (ascii) return String.fromCharCode.apply(null, this.b.subarray(at, at + n) as unknown as number[]);
    }
    try {
      return utf8.decode(this.b.subarray(at, at + n));
    } catch {
      throw new ValueError("a string that is not UTF-8");
    }
  }

  array(n: number, depth: number): Value[] {
    if (depth >= MAX_DEPTH) throw new ValueError(`nested deeper than ${MAX_DEPTH}`);
    const out: Value[] = new Array(this.count(n, 1));
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n: number, depth: number): ValueMap {
    if (depth >= MAX_DEPTH) throw new ValueError(`nested deeper than ${MAX_DEPTH}`);
    this.count(n, 2);
    const out: ValueMap = new Map();
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      out.set(key, this.value(depth + 1));
    }
    return out;
  }
}

/** A 64-bit integer as a number when a number holds it exactly. */
function exact(n: bigint): number | bigint {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n;
}

/** The first value of `bytes` (what follows it is ignored, as rmp-serde's from_slice does). Throws ValueError. */
export function readValue(bytes: Uint8Array): Value {
  return new Reader(bytes).value(0);
}

/** The value at `offset` and where it ends. Throws ValueError. */
export function readValueAt(bytes: Uint8Array, offset: number): [Value, number] {
  const r = new Reader(bytes);
  r.p = offset;
  return [r.value(0), r.p];
}
