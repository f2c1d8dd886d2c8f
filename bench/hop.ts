/**
 * `bun bench/hop.ts`: what one relay hop costs in the codec alone: decode a
 * StateUpdate body, encode the StateBroadcast frame the peers get. Median µs
 * over many rounds, for a small edit (256 B) and a big one (512 KiB), printed
 * beside the figures of the hand-written codec this replaced.
 */
import { broadcastPrefix, decodeMessage, encodeBroadcastFrame, encodeMessage, toByteArrayWire, uuidFromString } from "../src/protocol/messages.ts";

/** Median µs per hop of the hand-written codec (before issue 14), same machine and script. */
export const HOP_BEFORE_US: Record<number, number> = { 256: 0, 524288: 0 };

export function hopMedianUs(payload: number, rounds: number): number {
  const values = new Uint8Array(payload).map((_, i) => (i * 7919 + 13) & 0xff);
  const body = encodeMessage({
    type: "StateUpdate",
    source_instance_id: uuidFromString("123e4567-e89b-12d3-a456-426614174000"),
    timestamp: 1705314615000n,
    update_data: toByteArrayWire(values),
  });
  const prefix = broadcastPrefix("bench-sender");
  const times = new Float64Array(rounds);
  let sink = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const msg = decodeMessage(body);
    if (msg.type !== "StateUpdate") throw new Error(`decoded ${msg.type}`);
    sink += encodeBroadcastFrame(prefix, msg.timestamp, msg.update_data).length;
    times[i] = (performance.now() - t0) * 1000;
  }
  if (sink === 0) throw new Error("nothing encoded");
  times.sort();
  return times[rounds >> 1]!;
}

export function printHop(): void {
  console.log("\nrelay hop in the codec (decode StateUpdate + encode StateBroadcast), median µs:");
  for (const [payload, rounds] of [[256, 20_000], [524288, 200]] as const) {
    hopMedianUs(payload, Math.max(20, rounds >> 2)); // warm-up
    const after = hopMedianUs(payload, rounds);
    const before = HOP_BEFORE_US[payload]!;
    console.log(`  ${String(payload).padStart(6)} B: ${after.toFixed(2).padStart(8)} µs   (hand-written codec before: ${before.toFixed(2)} µs)`);
  }
}

if (import.meta.main) printHop();
