/**
 * The StateUpdate fast path, by hand because msgpackr cannot do this job: it turns
 * a 512 KiB `update_data` into a number[] of 4 MiB and cannot hand back a value's
 * raw bytes (one relay hop of 512 KiB: 8,334 µs on msgpackr alone, 781 µs with
 * this path; bench/hop.ts). It takes only the shape rmp-serde writes, fields in any
 * order, and returns `update_data` as a view of the input, ready to splice into
 * broadcasts. Anything else returns null and goes to the general path, which judges it.
 */
import { packBody } from "./msgpack.ts";

type FastKind = "uuid" | "u64" | "byteArray";

/** A reader of the variant `name` whose fields are `layout` (uuid, u64 and byte-array fields only). */
export function fastReader<T>(name: string, layout: Readonly<Record<string, string>>): (body: Uint8Array) => T | null {
  const names = Object.keys(layout);
  const kinds = Object.values(layout) as FastKind[];
  const keys = names.map((field) => packBody(field));
  // fixmap of one, the variant's name, fixmap of its fields
  const head = Uint8Array.of(0x81, ...packBody(name), 0x80 | names.length);
  return (b) => {
    const len = b.length;
    if (len < head.length) return null;
    for (let i = 0; i < head.length; i++) if (b[i] !== head[i]) return null;
    const out: Record<string, unknown> = { type: name };
    let p = head.length;
    for (let n = 0; n < names.length; n++) {
      const f = keyAt(b, p, keys);
      if (f < 0 || names[f]! in out) return null;
      p += keys[f]!.length;
      const m = b[p]!;
      if (kinds[f] === "uuid") {
        if (m !== 0xc4 || b[p + 1] !== 16 || p + 18 > len) return null;
        out[names[f]!] = b.slice(p + 2, p + 18);
        p += 18;
      } else if (kinds[f] === "u64") {
        const size = m < 0x80 ? 0 : m >= 0xcc && m <= 0xcf ? 1 << (m - 0xcc) : -1;
        if (size < 0 || p + 1 + size > len) return null;
        out[names[f]!] = size === 0 ? BigInt(m) : size === 8 ? (BigInt(uintAt(b, p + 1, 4)) << 32n) | BigInt(uintAt(b, p + 5, 4)) : BigInt(uintAt(b, p + 1, size));
        p += 1 + size;
      } else {
        const end = byteArrayEnd(b, p);
        if (end < 0) return null;
        out[names[f]!] = b.subarray(p, end);
        p = end;
      }
    }
    return out as T;
  };
}

/** Which of `keys` the bytes at `p` start with; -1 for none. */
function keyAt(b: Uint8Array, p: number, keys: readonly Uint8Array[]): number {
  outer: for (let k = 0; k < keys.length; k++) {
    const key = keys[k]!;
    for (let i = 0; i < key.length; i++) if (b[p + i] !== key[i]) continue outer;
    return k;
  }
  return -1;
}

/** A big-endian unsigned integer of 1 to 4 bytes. */
function uintAt(b: Uint8Array, p: number, size: number): number {
  let n = 0;
  for (let i = 0; i < size; i++) n = n * 256 + b[p + i]!;
  return n;
}

/**
 * Where a `Vec<u8>` in rmp-serde's own form (smallest array header, 0-127 as
 * fixint, 128-255 as `cc XX`) that starts at `p` ends; -1 if it is not in that form.
 */
function byteArrayEnd(b: Uint8Array, p: number): number {
  const m = b[p]!;
  const size = m >= 0x90 && m <= 0x9f ? 0 : m === 0xdc ? 2 : m === 0xdd ? 4 : -1;
  if (size < 0 || p + 1 + size > b.length) return -1;
  const n = size === 0 ? m & 0x0f : uintAt(b, p + 1, size);
  if (n < (size === 0 ? 0 : size === 2 ? 16 : 0x10000)) return -1;
  p += 1 + size;
  const last = b.length - 1;
  for (let i = 0; i < n; i++) {
    if (p > last) return -1;
    const v = b[p]!;
    if (v < 0x80) p++;
    else if (v === 0xcc && p < last && b[p + 1]! >= 0x80) p += 2;
    else return -1;
  }
  return p;
}
