/**
 * msgpackr, set up to read and write exactly what rmp-serde does, plus the little
 * MessagePack still written by hand, each piece saying why msgpackr cannot do it.
 *
 * Imported from "msgpackr/pack" (plain JS) rather than "msgpackr": the main entry
 * loads the optional native msgpackr-extract, which `bun build --compile` cannot
 * carry, so the binary and the sources would read strings with different code.
 */
// @ts-expect-error C1 (the value of marker 0xc1) is exported at run time, missing from this entry's .d.ts
import { C1, Packr, RESERVE_START_SPACE, RESET_BUFFER_MODE, Unpackr, addExtension } from "msgpackr/pack";
import { RelayError } from "../lib/errors.ts";
import type { ByteArrayWire } from "./schema.ts";

export function decodeError(why: string): RelayError {
  return new RelayError("E_DECODE", why);
}

/** The value of marker 0xc1, which rmp-serde refuses wherever it appears. */
export const RESERVED: unknown = C1;

/** A u64 >= 2^32: msgpackr writes float64 (number) or int64 `d3` (BigInt), rmp-serde the smallest unsigned form. */
class U64 {
  constructor(readonly value: bigint) {}
}

/**
 * Bytes already valid MessagePack, written as they are: a validated `update_data`
 * (msgpackr wants a number[], 4 MiB for 512 KiB, and writes a Uint8Array as `bin`,
 * which rmp-serde refuses there), or a part encoded once and reused.
 */
export class Splice {
  constructor(readonly bytes: Uint8Array) {}
}

/** What an ext value of any type decodes to: rmp-serde skips them in unknown fields. */
export const EXT = Object.freeze({ ext: true });

type Alloc = (size: number) => { target: Uint8Array; targetView: DataView; position: number };
// A `pack(value, allocateForWrite)` that writes through the allocator and returns nothing writes no ext
// header (this signature is missing from msgpackr's .d.ts), so the type numbers are never written.
addExtension({
  Class: U64,
  type: 0x7e,
  pack: (v: U64, alloc: Alloc) => {
    const { target, targetView, position } = alloc(9);
    target[position] = 0xcf;
    targetView.setBigUint64(position + 1, v.value);
  },
} as never);
addExtension({
  Class: Splice,
  type: 0x7f,
  pack: (v: Splice, alloc: Alloc) => {
    const { target, position } = alloc(v.bytes.length);
    target.set(v.bytes, position);
  },
} as never);
// Unknown ext types would throw; rmp-serde reads any of them (and refuses them where a type is expected).
// addExtension is process-wide: the client in the same process shares this codec, nothing else reads ext.
for (let type = 0; type < 256; type++) addExtension({ type, unpack: () => EXT });

/** Map keys in insertion order (build objects in Rust field order), map headers by size, nil for undefined. */
const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true });
/** Maps keep `0`, `"0"` and bin keys apart; u64/i64 come back as BigInt, so a number >= 2^32 was a float. */
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: "bigint" });

export const u64 = (v: bigint | number): number | U64 => (v <= 0xffffffff ? Number(v) : new U64(BigInt(v)));

/**
 * The encoding of `value` as a view of msgpackr's buffer, valid until the next pack. Every
 * pack starts at the same place (RESET_BUFFER_MODE): without it msgpackr fills its buffer
 * and then takes a new one as large, so kept views pinned them all (123 MiB for 18 KB of
 * small frames after one of 789 KB) and small frames made 8 KB of garbage every ~24.
 */
export const packView = (value: unknown, options = 0): Uint8Array => packr.pack(value, RESET_BUFFER_MODE | options);

/** A copy that owns its memory. */
export const packBody = (value: unknown): Uint8Array => new Uint8Array(packView(value));

/** `[u32 length][body]`, in memory of its own. */
export function packFrame(value: unknown): Uint8Array {
  const frame = new Uint8Array(packView(value, RESERVE_START_SPACE | 4));
  const n = frame.length - 4;
  [frame[0], frame[1], frame[2], frame[3]] = [n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return frame;
}

/**
 * The first value of `body` (rmp-serde ignores what follows it). Failures get
 * rmp-serde's words: msgpackr only says that the data ended.
 */
export function unpackFirst(body: Uint8Array): unknown {
  let value: unknown;
  try {
    unpackr.unpackMultiple(body, (v: unknown) => {
      value = v;
      return false;
    });
  } catch (error) {
    const eof = truncation(body);
    if (eof !== null) throw decodeError(eof);
    // Nesting deeper than the stack; rmp-serde stops at 1024 levels.
    if (error instanceof RangeError) throw decodeError("depth limit exceeded");
    throw decodeError(String((error as Error).message));
  }
  return value;
}

/**
 * An array header alone, by hand: a RegistrationResponse goes out as a head and
 * the session's encoded entries (one buffer shared by every newcomer), and
 * msgpackr writes an array's header only together with its elements.
 */
export function arrayHeader(n: number): Uint8Array {
  if (n < 16) return Uint8Array.of(0x90 | n);
  if (n < 0x10000) return Uint8Array.of(0xdc, n >> 8, n & 0xff);
  return Uint8Array.of(0xdd, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

const EOF_MARKER = "IO error while reading marker: failed to fill whole buffer";
const EOF_FIELD = "IO error while reading data: failed to fill whole buffer";
const EOF_BYTES = "IO error while reading data: unexpected end of file";

/**
 * Where the first value of `b` runs out, in rmp-serde's words (null: it does not).
 * By hand because msgpackr does not say, and rmp-serde's text depends on what was
 * cut: a marker, a number or length, or the bytes of a str/bin/ext.
 */
export function truncation(b: Uint8Array): string | null {
  let p = 0;
  for (let pending = 1; pending > 0; pending--) {
    if (p >= b.length) return EOF_MARKER;
    const m = b[p++]!;
    let items = 0; // values that follow: array elements, map keys and values
    let fixed = 0; // a number, an ext type byte
    let bytes = 0; // str/bin/ext data
    if (m >= 0x80 && m < 0xa0) items = m < 0x90 ? 2 * (m & 0x0f) : m & 0x0f;
    else if (m >= 0xa0 && m < 0xc0) bytes = m & 0x1f;
    else if (m === 0xca || m === 0xcb) fixed = m === 0xca ? 4 : 8;
    else if (m >= 0xcc && m <= 0xd3) fixed = 1 << ((m - 0xcc) & 3);
    else if (m >= 0xd4 && m <= 0xd8) [fixed, bytes] = [1, 1 << (m - 0xd4)];
    else if (m >= 0xc4 && m <= 0xdf) {
      // A length first: bin/ext 8, 16, 32 (c4-c9), str 8, 16, 32 (d9-db), array/map 16, 32 (dc-df).
      const size = m >= 0xdc ? 2 << ((m - 0xdc) & 1) : 1 << ((m - 0xc4) % 3);
      if (p + size > b.length) return EOF_FIELD;
      const n = uintAt(b, p, size);
      p += size;
      if (m >= 0xdc) items = m >= 0xde ? 2 * n : n;
      else [fixed, bytes] = [m >= 0xc7 && m <= 0xc9 ? 1 : 0, n];
    }
    if (p + fixed > b.length) return EOF_FIELD;
    p += fixed;
    if (p + bytes > b.length) return EOF_BYTES;
    p += bytes;
    pending += items;
  }
  return null;
}

/** A `Vec<u8>` as rmp-serde writes it (msgpackr picks the same integer forms), and back. */
export const toByteArrayWire = (values: Uint8Array) => packBody(Array.from(values)) as ByteArrayWire;
export const byteArrayValues = (wire: ByteArrayWire) => Uint8Array.from(unpackFirst(wire) as number[]);

/** A big-endian unsigned integer of 1 to 4 bytes. */
export function uintAt(b: Uint8Array, p: number, size: number): number {
  let n = 0;
  for (let i = 0; i < size; i++) n = n * 256 + b[p + i]!;
  return n;
}
