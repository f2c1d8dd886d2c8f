/**
 * The benchmark measures from bytes it patches into pre-encoded frames; these
 * prove the patched frames are what the client would have encoded, and that the
 * receiver reads back exactly what the sender stamped.
 */
import { parse as parseUuid } from "uuid";
import { describe, expect, test } from "bun:test";
import { createUpdateTemplate, parseBroadcast } from "../../../bench/recorder.ts";
import { encodeFrame, toByteArrayWire } from "../../../src/protocol/messages.ts";

const id = parseUuid("123e4567-e89b-42d3-a456-426614174000");
const encode = (update_data: Uint8Array, timestamp: bigint) =>
  encodeFrame({ type: "StateUpdate", source_instance_id: id, timestamp, update_data: toByteArrayWire(update_data) });

describe("benchmark update frames", () => {
  for (const size of [6, 256, 512 * 1024]) {
    test(`a patched ${size}-byte update is the frame the client would encode, and its broadcast reads back`, () => {
      const sender = 300;
      const template = createUpdateTemplate(encode, sender, size);
      for (const [seq, sentUs] of [
        [0, 1_763_800_000_000_000],
        [127, 1_763_800_000_123_456],
        [(1 << 28) - 1, 2 ** 53 - 1],
      ] as const) {
        const frame = template.frame(seq, sentUs);
        const payload = new Uint8Array(size);
        for (let i = 6; i < size; i++) payload[i] = (i * 7 + sender) & 0xff;
        payload.set([
          (seq >>> 21) & 0x7f,
          (seq >>> 14) & 0x7f,
          (seq >>> 7) & 0x7f,
          seq & 0x7f,
          sender >> 7,
          sender & 0x7f,
        ]);
        expect(Buffer.from(frame).equals(Buffer.from(encode(payload, BigInt(sentUs))))).toBe(true);
        const broadcast = encodeFrame({
          type: "StateBroadcast",
          source_instance_name: "bench-300",
          timestamp: BigInt(sentUs),
          update_data: toByteArrayWire(payload),
        });
        expect(parseBroadcast(broadcast.subarray(4))).toEqual({ sender, seq, sentUs });
      }
    });
  }
});
