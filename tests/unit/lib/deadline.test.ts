import { describe, expect, test } from "bun:test";
import { waitAtMost, withTimeout } from "../../../src/lib/deadline.ts";

describe("withTimeout", () => {
  test("gives the value when it comes in time, and never calls late() afterwards", async () => {
    let lateCalls = 0;
    const late = () => {
      lateCalls++;
      return new Error("late");
    };
    expect(await withTimeout(Promise.resolve(7), 5, late)).toBe(7);
    // A longer wait that does expire: by then the first one's timer would have fired, had it been left.
    await expect(withTimeout(new Promise(() => {}), 30)).rejects.toThrow("no answer within 30 ms");
    expect(lateCalls).toBe(0);
  });

  test("rejects with the error late() makes, and passes the promise's own rejection through", async () => {
    const never = new Promise<number>(() => {});
    await expect(withTimeout(never, 5, () => new RangeError("too slow"))).rejects.toBeInstanceOf(RangeError);
    await expect(withTimeout(Promise.reject(new Error("refused")), 1000)).rejects.toThrow("refused");
  });
});

describe("waitAtMost", () => {
  test("returns when the promise settles, rejected or not, or when the time is up", async () => {
    await waitAtMost(Promise.reject(new Error("ignored")), 1000);
    const t0 = performance.now();
    await waitAtMost(new Promise(() => {}), 20);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(15);
  });
});
