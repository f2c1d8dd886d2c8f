/**
 * The one log throttle for counts (src/lib/repeats.ts): the first occurrence is
 * logged at once, later ones within the window are added up and written when
 * it ends (with no later occurrence to carry them), so the totals logged add up
 * to what happened.
 */
import { describe, expect, test } from "bun:test";
import { createKindTallyLine, createTally, createTallyLine } from "../../../src/lib/repeats.ts";

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

describe("createKindTallyLine", () => {
  type Line = { counts: Readonly<Record<"refused" | "cut", number>>; last: "refused" | "cut" };

  test("one line for every kind: the first at once, the burst's counts and its last kind when the window ends", async () => {
    const lines: Line[] = [];
    const written = Promise.withResolvers<void>();
    const t = createKindTallyLine(30, ["refused", "cut"] as const, (counts, last) => {
      lines.push({ counts, last });
      if (lines.length === 2) written.resolve();
    });
    t.add("cut");
    t.add("refused");
    t.add("cut");
    t.add("refused");
    expect(lines).toEqual([{ counts: { refused: 0, cut: 1 }, last: "cut" }]);
    await written.promise;
    expect(lines).toEqual([
      { counts: { refused: 0, cut: 1 }, last: "cut" },
      { counts: { refused: 2, cut: 1 }, last: "refused" },
    ]);
    // The window after a written line starts afresh: the next occurrence is written at once.
    await Bun.sleep(40);
    t.add("cut");
    expect(lines.at(-1)).toEqual({ counts: { refused: 0, cut: 1 }, last: "cut" });
    t.stop();
  });

  test("every occurrence is in exactly one line, whatever the timing", async () => {
    const totals = { refused: 0, cut: 0 };
    const t = createKindTallyLine(10, ["refused", "cut"] as const, (counts) => {
      totals.refused += counts.refused;
      totals.cut += counts.cut;
    });
    for (let i = 0; i < 50; i++) {
      t.add(i % 3 === 0 ? "cut" : "refused");
      if (i % 7 === 0) await Bun.sleep(3);
    }
    t.stop();
    expect(totals).toEqual({ refused: 33, cut: 17 });
  });

  test("stop writes what is held and clears the timer; adds after it are ignored", () => {
    const lines: Line[] = [];
    const t = createKindTallyLine(60_000, ["refused", "cut"] as const, (counts, last) => lines.push({ counts, last }));
    t.add("refused");
    t.add("cut");
    t.add("cut");
    t.stop();
    t.add("refused");
    t.stop();
    expect(lines).toEqual([
      { counts: { refused: 1, cut: 0 }, last: "refused" },
      { counts: { refused: 0, cut: 2 }, last: "cut" },
    ]);
  });

  test("nothing held, nothing written: stop after a lone occurrence adds no line", () => {
    const lines: Line[] = [];
    const t = createKindTallyLine(60_000, ["refused", "cut"] as const, (counts, last) => lines.push({ counts, last }));
    t.add("cut");
    t.stop();
    expect(lines).toHaveLength(1);
  });
});
