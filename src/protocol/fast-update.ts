/**
 * The StateUpdate fast path, by hand because msgpackr cannot do this job: it turns
 * a 512 KiB `update_data` into a number[] of 4 MiB and cannot hand back a value's
 * raw bytes (one relay hop of 512 KiB: 8,334 µs on msgpackr alone, 781 µs with
 * this path, per issue 14; bench/hop.ts measures ours). It takes the shape rmp-serde
 * writes, and msgpackr's defaults (map16 headers, int64 for a BigInt), fields in any
 * order, and returns `update_data` as a view of the input, ready to splice into
 * broadcasts. Anything else returns null and goes to the general path, which judges it.
 */
import { packBody, uintAt } from "./msgpack.ts";
import type { ByteArrayWire, StateUpdate } from "./schema.ts";

const [VARIANT, ID, TIMESTAMP, DATA] = ["StateUpdate", "source_instance_id", "timestamp", "update_data"].map(packBody);

export function decodeStateUpdate(b: Uint8Array): StateUpdate | null {
  const outer = mapHeaderEnd(b, 0, 1); // {StateUpdate: {<3 fields>}}
  if (outer < 0 || !startsWith(b, outer, VARIANT!)) return null;
  let p = mapHeaderEnd(b, outer + VARIANT!.length, 3);
  const out: Partial<StateUpdate> = { type: "StateUpdate" };
  for (let n = 0; n < 3 && p > 0; n++) {
    if (!out.source_instance_id && startsWith(b, p, ID!)) {
      p += ID!.length;
      if (b[p] !== 0xc4 || b[p + 1] !== 16 || p + 18 > b.length) return null;
      out.source_instance_id = new Uint8Array(b.subarray(p + 2, p + 18)); // a copy: a Buffer's slice() is a view
      p += 18;
    } else if (out.timestamp === undefined && startsWith(b, p, TIMESTAMP!)) {
      p += TIMESTAMP!.length;
      const m = b[p]!;
      // Unsigned forms, or signed ones holding a value >= 0 (what msgpackr writes for a BigInt).
      const size = m < 0x80 ? 0 : m >= 0xcc && m <= 0xd3 ? 1 << ((m - 0xcc) & 3) : -1;
      if (size < 0 || p + 1 + size > b.length || (m >= 0xd0 && b[p + 1]! >= 0x80)) return null;
      const high = size === 8 ? BigInt(uintAt(b, p + 1, 4)) << 32n : 0n;
      p += 1 + size;
      out.timestamp = high + BigInt(size === 0 ? m : uintAt(b, p - Math.min(size, 4), Math.min(size, 4)));
    } else if (!out.update_data && startsWith(b, p, DATA!)) {
      const start = p + DATA!.length;
      p = byteArrayEnd(b, start);
      out.update_data = b.subarray(start, p) as ByteArrayWire;
    } else return null;
  }
  return p > 0 ? (out as StateUpdate) : null;
}

/** Where a map header of `count` entries at `p` ends (fixmap, map16, map32); -1 if there is none. */
export function mapHeaderEnd(b: Uint8Array, p: number, count: number): number {
  const m = b[p];
  const size = m === 0x80 + count && count < 16 ? 0 : m === 0xde ? 2 : m === 0xdf ? 4 : -1;
  if (size < 0 || p + 1 + size > b.length || (size > 0 && uintAt(b, p + 1, size) !== count)) return -1;
  return p + 1 + size;
}

/** Whether `bytes` stand in `b` at `p`. */
export function startsWith(b: Uint8Array, p: number, bytes: Uint8Array): boolean {
  if (p + bytes.length > b.length) return false;
  for (let i = 0; i < bytes.length; i++) if (b[p + i] !== bytes[i]) return false;
  return true;
}

/** Where a `Vec<u8>` at `p` in rmp-serde's form (smallest header, `cc XX` only for 128-255) ends; -1 if not in it. */
function byteArrayEnd(b: Uint8Array, p: number): number {
  const m = b[p]!;
  const size = m >= 0x90 && m <= 0x9f ? 0 : m === 0xdc ? 2 : m === 0xdd ? 4 : -1;
  if (size < 0 || p + 1 + size > b.length) return -1;
  const n = size === 0 ? m & 0x0f : uintAt(b, p + 1, size);
  if (n < (size === 0 ? 0 : size === 2 ? 16 : 0x10000)) return -1;
  const last = b.length - 1;
  p += 1 + size;
  for (let i = 0; i < n; i++) {
    if (p > last) return -1;
    const v = b[p]!;
    if (v < 0x80) p++;
    else if (v === 0xcc && p < last && b[p + 1]! >= 0x80) p += 2;
    else return -1;
  }
  return p;
}
