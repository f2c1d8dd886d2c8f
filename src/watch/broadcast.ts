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
import { readValueAt, ValueError } from "./value.ts";

export interface BroadcastParts {
  source: string;
  /** The sender's timestamp (ms since the epoch), as it was relayed. */
  timestamp: bigint | number;
  data: Uint8Array;
}

/** The array of bytes at `p`: fixint or `cc XX` elements; returns the bytes and where they end. */
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
  for (let i = 0; i < n; i++) {
    const v = b[p++];
    if (v === undefined) throw new ValueError("update_data runs past the frame");
    if (v < 0x80) out[i] = v;
    else if (v === 0xcc && p < b.length) out[i] = b[p++]!;
    else throw new ValueError("update_data holds something other than bytes");
  }
  return [out, p];
}

/** A whole frame (`[u32 length][body]`) as the relay sends it; null for anything else. */
export function parseBroadcast(frame: Uint8Array): BroadcastParts | null {
  try {
    if (frame.length < 6 || frame[4] !== 0x81) return null;
    let [key, p] = readValueAt(frame, 5);
    if (key !== "StateBroadcast" || frame[p] !== 0x83) return null;
    p++;
    const out: Partial<BroadcastParts> = {};
    for (let i = 0; i < 3; i++) {
      [key, p] = readValueAt(frame, p);
      if (key === "update_data") [out.data, p] = byteArray(frame, p);
      else {
        let value: unknown;
        [value, p] = readValueAt(frame, p);
        if (key === "source_instance_name" && typeof value === "string") out.source = value;
        else if (key === "timestamp" && (typeof value === "number" || typeof value === "bigint")) out.timestamp = value;
      }
    }
    return out.source !== undefined && out.data && out.timestamp !== undefined ? (out as BroadcastParts) : null;
  } catch {
    return null;
  }
}
