/** The sliding rate window and the log-repeat counter, with time passed in by hand. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createRepeats, MANY } from "../../../src/lib/repeats.ts";
import { createWindow } from "../../../src/core/window.ts";

describe("sliding window", () => {
  test("no 60 s span ever holds more than the limit, whatever the arrival times", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 300 }),
        (limit, gaps) => {
          const w = createWindow(limit, 60_000);
          const accepted: number[] = [];
          let t = 1_700_000_000_000;
          for (const gap of gaps) {
            t += gap;
            if (w.fits(t, 1)) {
              w.add(1);
              accepted.push(t);
            }
          }
          for (let i = 0; i < accepted.length; i++) {
            let inSpan = 0;
            for (let j = i; j < accepted.length && accepted[j]! - accepted[i]! < 60_000; j++) inSpan++;
            if (inSpan > limit) return false;
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });

  test("the budget comes back as time passes: at most one slot (1 s) later than an exact log", () => {
    const w = createWindow(2, 60_000);
    const t0 = 1_700_000_000_500;
    expect(w.fits(t0, 1)).toBe(true);
    w.add(1);
    expect(w.fits(t0, 1)).toBe(true);
    w.add(1);
    expect(w.fits(t0 + 59_999, 1)).toBe(false);
    expect(w.fits(t0 + 61_000, 1)).toBe(true);
  });
});

describe("log repeats", () => {
  test("the first of each event and key is logged, the rest counted once the window ends; counts add up", () => {
    const r = createRepeats(60_000);
    const t = 1_000_000;
    expect(r.first("connection_accepted", "1.2.3.4", t)).toBe(true);
    for (let i = 0; i < 99; i++) expect(r.first("connection_accepted", "1.2.3.4", t + i)).toBe(false);
    expect(r.first("connection_accepted", "5.6.7.8", t)).toBe(true);
    expect(r.due(t + 59_999)).toEqual([]);
    const due = r.due(t + 60_000);
    expect(due.map((d) => [d.event, d.key, d.count])).toEqual([["connection_accepted", "1.2.3.4", 99]]);
    expect(r.tracked).toBe(0);
    expect(r.first("connection_accepted", "1.2.3.4", t + 60_001)).toBe(true);
  });

  test("very many addresses share a budget of lines a second; the rest are one count, and the counts add up", () => {
    const r = createRepeats(60_000);
    const t = 5_000_000;
    let logged = 0;
    for (let i = 0; i < 1000; i++)
      if (r.first("registration_rejected", `10.0.${i >> 8}.${i & 255}`, t + (i % 1000) / 10)) logged++;
    expect(logged).toBe(50);
    const many = r.due(t + 61_000).filter((d) => d.key === MANY);
    expect(many.map((d) => d.count)).toEqual([950]);
    expect(many[0]!.fields.ip).toBe(MANY);
  });

  test("a per-key allowance: the first few of a key one by one, then counted; the per-second budget still holds", () => {
    const r = createRepeats(60_000, 10_000, { perKey: 3, perSecond: 5 });
    const t = 7_000_000;
    const logged = Array.from({ length: 10 }, (_, i) => r.first("registered", "1.2.3.4", t + i)).filter(Boolean);
    expect(logged.length).toBe(3);
    // Two more keys in the same second: the budget of 5 lines a second leaves room for 2.
    expect([r.first("registered", "5.6.7.8", t + 20), r.first("registered", "5.6.7.8", t + 21)]).toEqual([true, true]);
    expect(r.first("registered", "9.9.9.9", t + 22)).toBe(false);
    expect(r.first("registered", "5.6.7.8", t + 1500)).toBe(true);
    const counted = r.due(t + 61_000).reduce((n, d) => n + d.count, 0);
    expect(3 + 3 + counted).toBe(10 + 3 + 1);
  });
});
