/**
 * A sliding window that holds over ANY span of its length, not just aligned
 * ones: a fixed 60 s window let twice the limit through across its edge (20
 * updates in 0.7 s with a limit of 10). Counts live in one-second slots; a
 * decision adds up the current slot and the `slots` before it, which cover more
 * than the span, so whatever span one looks at holds at most `limit` (a sender
 * may be held back up to one slot longer than strictly needed). Memory is
 * constant per window whatever the limit; time comes in from the caller.
 */
export interface SlidingWindow {
  /** True when `amount` more fits at `now`; nothing is counted until `add`. */
  fits(now: number, amount: number): boolean;
  add(amount: number): void;
  /** What the last `fits` saw in the window. */
  readonly used: number;
}

export function createWindow(limit: number, spanMs: number, slots = 60): SlidingWindow {
  const slotMs = spanMs / slots;
  const counts = new Float64Array(slots + 1);
  let current = -1;
  let used = 0;

  function advance(now: number): void {
    const slot = Math.floor(now / slotMs);
    if (current < 0 || slot - current > slots) {
      counts.fill(0);
      used = 0;
    } else {
      for (let s = current + 1; s <= slot; s++) {
        const i = s % counts.length;
        used -= counts[i]!;
        counts[i] = 0;
      }
    }
    if (slot > current) current = slot;
  }

  return {
    fits(now, amount) {
      advance(now);
      return used + amount <= limit;
    },
    add(amount) {
      counts[current % counts.length]! += amount;
      used += amount;
    },
    get used() {
      return used;
    },
  };
}
