/**
 * Waiting with a deadline, the one way: the timer is cleared whichever comes
 * first, so a settled wait leaves nothing pending (a pending timer keeps a CLI
 * command alive and a test's relay open).
 */

/** `p`, or the error `late()` makes once `ms` have passed without it. */
export function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  late: () => Error = () => new Error(`no answer within ${ms} ms`),
): Promise<T> {
  let timer: Timer | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** Waits for `p` to settle, at most `ms`; its outcome is not wanted, only that it had its chance. */
export async function waitAtMost(p: Promise<unknown>, ms: number): Promise<void> {
  await withTimeout(p, ms).catch(() => {});
}
