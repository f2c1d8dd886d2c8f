/**
 * Which relay address to try next, and when: the addresses of --to in turn,
 * starting from the one that worked last, with an exponential backoff (capped
 * low: a player is waiting) and jitter, so a hundred tunnels that lost the same
 * node do not all knock on the next one in the same millisecond.
 */
import type { TunnelTarget } from "./target.ts";

export interface Backoff {
  /** The wait after the first full round of addresses failed. */
  baseMs: number;
  maxMs: number;
  /** A fraction: each wait is moved by up to this much of itself, either way. */
  jitter: number;
  random?: () => number;
}

/** Under a second from the relay being back to the session restored, at about two attempts a second. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 100, maxMs: 500, jitter: 0.25 };

export interface Attempt {
  readonly target: TunnelTarget;
  /** Milliseconds to wait before making it. */
  readonly delayMs: number;
  /** 1 for the first attempt after the loss. */
  readonly number: number;
}

export interface Rotation {
  next(): Attempt;
  /** `target` worked: the next loss starts from it, at once. */
  worked(target: TunnelTarget): void;
  /** A new loss: the count starts again. */
  restart(): void;
}

export function createRotation(targets: readonly TunnelTarget[], backoff: Backoff = DEFAULT_BACKOFF): Rotation {
  const random = backoff.random ?? Math.random;
  let start = 0;
  let count = 0;
  return {
    next() {
      count++;
      const target = targets[(start + count - 1) % targets.length]!;
      // The first attempt goes at once (a blip, or the next node); then a round of addresses per backoff step.
      if (count === 1) return { target, delayMs: 0, number: count };
      const round = Math.floor((count - 2) / targets.length);
      const base = Math.min(backoff.maxMs, backoff.baseMs * 2 ** round);
      const delayMs = Math.round(base * (1 + backoff.jitter * (2 * random() - 1)));
      return { target, delayMs, number: count };
    },
    worked(target) {
      const i = targets.indexOf(target);
      if (i >= 0) start = i;
    },
    restart() {
      count = 0;
    },
  };
}
