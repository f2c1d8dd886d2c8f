/**
 * The resumption Mark (docs/protocol.md, "Resumption") read by hand: a tunnel
 * reads one before every broadcast it passes on, and the general path (msgpackr
 * and rmp-serde's checks) took about 10 µs of the tunnel's CPU per frame for a
 * map of three small fields. It takes the shape the relay writes (names and the
 * origin as short ASCII strings, numbers unsigned, fields in any order); anything
 * else returns null and goes to the general path.
 */
import { packBody, uintAt } from "./msgpack.ts";
import type { Variant } from "./schema.ts";

const HEAD = Uint8Array.of(0x81, ...packBody("Mark"), 0x83);

/** Where the reader is in the body; -1 once it met something it does not take. */
interface Reader {
  b: Uint8Array;
  p: number;
}

function stop<T>(r: Reader, value: T): T {
  r.p = -1;
  return value;
}

function uint(r: Reader): bigint {
  const m = r.b[r.p];
  if (m === undefined) return stop(r, 0n);
  if (m < 0x80) {
    r.p++;
    return BigInt(m);
  }
  const size = m >= 0xcc && m <= 0xcf ? 1 << (m - 0xcc) : 0;
  if (size === 0 || r.p + 1 + size > r.b.length) return stop(r, 0n);
  const at = r.p + 1;
  r.p += 1 + size;
  if (size < 8) return BigInt(uintAt(r.b, at, size));
  return new DataView(r.b.buffer, r.b.byteOffset + at, 8).getBigUint64(0);
}

function str(r: Reader): string {
  const m = r.b[r.p];
  const len = m !== undefined && m >= 0xa0 && m <= 0xbf ? m & 0x1f : -1;
  if (len < 0 || r.p + 1 + len > r.b.length) return stop(r, "");
  let s = "";
  for (let i = r.p + 1; i <= r.p + len; i++) {
    const c = r.b[i]!;
    if (c >= 0x80) return stop(r, "");
    s += String.fromCharCode(c);
  }
  r.p += 1 + len;
  return s;
}

export function decodeMark(b: Uint8Array): Variant<"Mark"> | null {
  for (let i = 0; i < HEAD.length; i++) if (b[i] !== HEAD[i]) return null;
  const r: Reader = { b, p: HEAD.length };
  let origin: string | undefined;
  let q: bigint | undefined;
  let n: bigint | undefined;
  for (let field = 0; field < 3 && r.p >= 0; field++) {
    const key = str(r);
    if (r.p < 0) return null;
    if (key === "origin" && origin === undefined) origin = str(r);
    else if (key === "q" && q === undefined) q = uint(r);
    else if (key === "n" && n === undefined) n = uint(r);
    else return null;
  }
  if (r.p < 0 || origin === undefined || q === undefined || n === undefined) return null;
  return { type: "Mark", origin, q, n };
}
