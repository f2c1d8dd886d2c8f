/**
 * The one log throttle for counts (src/lib/repeats.ts): the first occurrence is
 * logged at once, later ones within the window are added up and reported with
 * the first occurrence after it, so the totals logged add up to what happened.
 */
import { describe, expect, test } from "bun:test";
import { createKindTally, createTally } from "../../../src/lib/repeats.ts";

describe("createTally", () => {
  test("logs the first at once, then the sum of everything since, once per window", () => {
    const t = createTally(1000);
    expect(t.add(1, 0)).toBe(1);
    expect(t.add(1, 10)).toBe(0);
    expect(t.add(3, 999)).toBe(0);
    expect(t.add(1, 1000)).toBe(5);
    expect(t.add(1, 1500)).toBe(0);
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
