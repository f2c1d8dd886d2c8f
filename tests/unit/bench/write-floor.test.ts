/**
 * The capacity scenario's floor of the relay's writes (bench/write-floor.ts), with and without the
 * relay's nudges: the difference is what the bench reports as the nudges' part of the floor, so the
 * floor without them must make the same beat's writes and no nudge, and the one with them must nudge
 * at the rate it is given.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { measureFloor, nudgeCost } from "../../../bench/capacity.ts";
import { createLimit } from "../../../bench/limit.ts";
import type { FloorSpec } from "../../../bench/write-floor.ts";
import { ROOT } from "../../support/paths.ts";

// Driven as the bench drives it (measureFloor), without a cgroup: the counts, not the limit, are under test.
const limit = createLimit(`sova-test-floor-${process.pid}`, join(ROOT, ".tmp", "write-floor-test"), "none")!;

const spec = (nudgesPerSec: number): FloorSpec => ({
  groups: 1,
  size: 5,
  rate: 10,
  frameBytes: 100,
  perFrame: false,
  nudgesPerSec,
  warmupS: 0.1,
  durationS: 1,
});

describe("the floor of the relay's writes", () => {
  test("without nudges it makes the beats' writes alone; with them, the beats' and the nudges at their rate", async () => {
    const [alone, nudged] = await Promise.all([
      measureFloor(limit, spec(0), "floor-alone"),
      measureFloor(limit, spec(200), "floor-nudged"),
    ]);
    // 10 beats a second for 1 s, each one write to each of the 5 members, 4 frames apiece.
    expect(alone.nudges).toBe(0);
    expect(alone.writes).toBeGreaterThanOrEqual(9 * 5);
    expect(alone.writes).toBeLessThanOrEqual(11 * 5);
    expect(alone.deliveries).toBe(alone.writes * 4);
    expect(nudged.nudges).toBeGreaterThanOrEqual(150);
    expect(nudged.nudges).toBeLessThanOrEqual(220);
    expect(nudged.writes - nudged.nudges).toBe(nudged.deliveries / 4);
  }, 20_000);

  test("the nudges' part is the floor with them less the floor without, per delivery and per nudge", () => {
    const withNudges = { cpuUsPerDelivery: 1.8, deliveries: 190_000, nudges: 24_000 };
    const beatsAlone = { cpuUsPerDelivery: 0.3, deliveries: 190_000, nudges: 0 };
    const cost = nudgeCost(withNudges, beatsAlone);
    expect(cost.perDeliveryUs).toBeCloseTo(1.5, 9);
    expect(cost.perNudgeUs).toBeCloseTo((1.5 * 190_000) / 24_000, 9);
    expect(nudgeCost(beatsAlone, beatsAlone).perNudgeUs).toBeNaN();
  });
});
