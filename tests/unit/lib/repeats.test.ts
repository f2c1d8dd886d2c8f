/**
 * The one log throttle for counts (src/lib/repeats.ts): the first occurrence is
 * logged at once, later ones within the window are added up and reported with
 * the first occurrence after it, so the totals logged add up to what happened.
 */
import { describe, expect, test } from "bun:test";
import { createKindTally, createTally, createTallyLine } from "../../../src/lib/repeats.ts";

describe("createTally", () => {
  test("logs the first at once, then the sum of everything since, once per window", () => {
    const t = createTally(1000);
    expect(t.add(1, 0)).toBe(1);
    expect(t.add(1, 10)).toBe(0);
    expect(t.add(3, 999)).toBe(0);
    expect(t.add(1, 1000)).toBe(5);
    expect(t.add(1, 1500)).toBe(0);
  });

  test("says until when it holds a sum back, and that it holds none once it is logged", () => {
    const t = createTally(1000);
    expect(t.heldUntil).toBeNull();
    t.add(1, 100);
    expect(t.heldUntil).toBeNull();
    t.add(1, 200);
    expect(t.heldUntil).toBe(1100);
    expect(t.add(0, 1100)).toBe(1);
    expect(t.heldUntil).toBeNull();
  });
});

describe("createTallyLine", () => {
  test("writes what it held back when the window ends, with nothing after to carry it", async () => {
    const lines: number[] = [];
    const written = Promise.withResolvers<void>();
    const t = createTallyLine(30, (n) => {
      lines.push(n);
      if (lines.length === 2) written.resolve();
    });
    for (let i = 0; i < 5; i++) t.add(1);
    expect(lines).toEqual([1]);
    await written.promise;
    expect(lines).toEqual([1, 4]);
    t.stop();
  });

  test("stop writes what is held and clears the timer; adds after it are ignored", () => {
    const lines: number[] = [];
    const t = createTallyLine(60_000, (n) => lines.push(n));
    t.add(1);
    t.add(2);
    t.stop();
    t.add(5);
    t.stop();
    expect(lines).toEqual([1, 2]);
  });
});

describe("createKindTally", () => {
  test("reports every kind's count since the last line, and the totals add up", () => {
    const t = createKindTally(1000, ["refused", "cut"] as const);
    expect(t.add("cut", 0)).toEqual({ refused: 0, cut: 1 });
    expect(t.add("refused", 5)).toBeNull();
    expect(t.add("refused", 6)).toBeNull();
    expect(t.add("cut", 7)).toBeNull();
    expect(t.add("refused", 1000)).toEqual({ refused: 3, cut: 1 });
    expect(t.add("cut", 1001)).toBeNull();
    expect(t.add("cut", 2001)).toEqual({ refused: 0, cut: 2 });
  });
});
