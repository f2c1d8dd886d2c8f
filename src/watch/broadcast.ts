/**
 * The parts of a StateBroadcast frame the watcher needs: who sent it, and a copy
 * of its `update_data` as the bytes Sova wrote (rmp-serde's `Vec<u8>`, an array of
 * small integers on the wire, unpacked here into a Uint8Array). The copy is the
 * watcher's own: decoding never touches the frame the relay is sending.
 *
 * By hand rather than through msgpackr, which would turn a 1 MiB `update_data`
 * into a JavaScript array of a million numbers first (protocol/fast-update.ts
 * measured the same for StateUpdate).
 */
import { startsWith } from "../protocol/fast-update.ts";
import { readValueAt, ValueError } from "./value.ts";

export interface BroadcastParts {
  source: string;
  data: Uint8Array;
}

/**
 * The array of bytes at `p` (fixint elements, `cc XX` for 128-255); returns the bytes and where they end. Runs
 * of fixints are copied whole: a byte at a time was most of the watcher's cost.
 */
function byteArray(b: Uint8Array, p: number): [Uint8Array, number] {
  const m = b[p]!;
  let n: number;
  if (m >= 0x90 && m <= 0x9f) [n, p] = [m & 0x0f, p + 1];
  else if (m === 0xdc && p + 3 <= b.length) [n, p] = [(b[p + 1]! << 8) | b[p + 2]!, p + 3];
  else if (m === 0xdd && p + 5 <= b.length)
    [n, p] = [((b[p + 1]! << 24) >>> 0) + ((b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!), p + 5];
  else throw new ValueError("update_data is not an array");
  if (n > b.length - p) throw new ValueError("update_data runs past the frame");
  const out = new Uint8Array(n);
  const end = b.length;
  let i = 0;
  // No check that other bytes are below 0x80: the relay wrote this array itself, from one it checked.
  while (i < n && p < end) {
    const v = b[p]!;
    if (v === 0xcc) {
      out[i++] = b[p + 1]!;
      p += 2;
    } else {
      out[i++] = v;
      p++;
    }
  }
  if (i < n || p > end) throw new ValueError("update_data runs past the frame");
  return [out, p];
}

const ascii = (text: string) => Uint8Array.from([0xa0 | text.length, ...Buffer.from(text)]);
const VARIANT = ascii("StateBroadcast");
const NAME = ascii("source_instance_name");
const TIMESTAMP = ascii("timestamp");
const DATA = ascii("update_data");

/** Past an unsigned integer at `p` (the timestamp, never needed as a number here). */
function skipUint(b: Uint8Array, p: number): number {
  const m = b[p]!;
  const size = m < 0x80 ? 0 : m >= 0xcc && m <= 0xcf ? 1 << (m - 0xcc) : m >= 0xd0 && m <= 0xd3 ? 1 << (m - 0xd0) : -1;
  if (size < 0 || p + 1 + size > b.length) throw new ValueError("a timestamp that is not an integer");
  return p + 1 + size;
}

/**
 * A whole frame (`[u32 length][body]`) as the relay sends it: {StateBroadcast: {3 fields}}, fields in any
 * order; null for anything else.
 */
export function parseBroadcast(frame: Uint8Array): BroadcastParts | null {
  try {
    if (frame.length < 6 || frame[4] !== 0x81 || !startsWith(frame, 5, VARIANT) || frame[5 + VARIANT.length] !== 0x83)
      return null;
    let p = 6 + VARIANT.length;
    let source: string | undefined;
    let data: Uint8Array | undefined;
    let stamped = false;
    for (let i = 0; i < 3; i++) {
      if (startsWith(frame, p, NAME)) {
        const [name, end] = readValueAt(frame, p + NAME.length);
        if (typeof name !== "string") return null;
        [source, p] = [name, end];
      } else if (startsWith(frame, p, TIMESTAMP)) [p, stamped] = [skipUint(frame, p + TIMESTAMP.length), true];
      else if (startsWith(frame, p, DATA)) [data, p] = byteArray(frame, p + DATA.length);
      else return null;
    }
    return source !== undefined && data && stamped ? { source, data } : null;
  } catch {
    return null;
  }
}
