/**
 * The StateUpdate fast path, by hand because msgpackr cannot do this job: it turns
 * a 512 KiB `update_data` into a number[] of 4 MiB and cannot hand back a value's
 * raw bytes (one relay hop of 512 KiB: 8,334 µs on msgpackr alone, 781 µs with
 * this path, per issue 14; bench/hop.ts measures ours). It takes only the shape
 * rmp-serde writes, fields in any order, and returns `update_data` as a view of the
 * input, ready to splice into broadcasts. Anything else returns null and goes to
 * the general path, which judges it.
 */
import { packBody, uintAt } from "./msgpack.ts";

/** A reader of the variant `name`, whose fields (uuid, u64 or byteArray) are `layout`. */
export function fastReader<T>(name: string, layout: Readonly<Record<string, string>>): (body: Uint8Array) => T | null {
  const names = Object.keys(layout);
  const kinds = Object.values(layout);
  const keys = names.map((field) => packBody(field));
  const head = Uint8Array.of(0x81, ...packBody(name), 0x80 | names.length); // {name: {<fields>}}
  return (b) => {
    if (!startsWith(b, 0, head)) return null;
    const out: Record<string, unknown> = { type: name };
    let p = head.length;
    for (let n = 0; n < names.length; n++) {
      let f = 0;
      while (f < keys.length && !startsWith(b, p, keys[f]!)) f++;
      if (f === keys.length) return null;
      if (names[f]! in out) return null;
      p += keys[f]!.length;
      const m = b[p]!;
      let end: number;
      if (kinds[f] === "uuid") {
        if (m !== 0xc4 || b[p + 1] !== 16 || (end = p + 18) > b.length) return null;
        out[names[f]!] = b.slice(p + 2, end);
      } else if (kinds[f] === "u64") {
        const size = m < 0x80 ? 0 : m >= 0xcc && m <= 0xcf ? 1 << (m - 0xcc) : -1;
        if (size < 0 || (end = p + 1 + size) > b.length) return null;
        const high = size === 8 ? BigInt(uintAt(b, p + 1, 4)) << 32n : 0n;
        out[names[f]!] = high + BigInt(size === 0 ? m : uintAt(b, p + 1 + size - Math.min(size, 4), Math.min(size, 4)));
      } else {
        if ((end = byteArrayEnd(b, p)) < 0) return null;
        out[names[f]!] = b.subarray(p, end);
      }
      p = end;
    }
    return out as T;
  };
}

function startsWith(b: Uint8Array, p: number, bytes: Uint8Array): boolean {
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
