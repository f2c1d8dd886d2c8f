import { expect, test } from "bun:test";
import { fanout } from "../../../bench/fanout.ts";

test("the fanout scenario measures the relay as built: every member gets each other's broadcast, each beat", async () => {
  const r = await fanout(12, 3);
  // 6 beats (3 to warm up), 12 x 11 deliveries each.
  expect(r.deliveries).toBe(6 * 12 * 11);
  expect(r.bytesPerMember).toBe(r.expectedBytesPerMember);
  expect(r.relayMs).toBeGreaterThan(0);
  expect(r.noRulesMs).toBeGreaterThan(0);
});
