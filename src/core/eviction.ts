/**
 * Which handshake gives up its slot when every slot is taken (TCP's
 * --max-handshakes, and the WebSocket endpoint's smaller cap).
 *
 * "The oldest goes" let a flood of silent connections from 192 addresses cut
 * players who register a round trip after connecting (a far venue over TLS:
 * 12-14 of 18 got in). So the victim comes from the address group holding the
 * most handshakes; between equals, the one that opened the most lately (a
 * flood reconnects, a player connects once); within the group, its oldest.
 * Handshakes younger than SPARE_MS are taken only when no group holds an
 * older one: a player is given the time to send its RegisterInstance.
 */

/**
 * A TLS handshake and a RegisterInstance from a venue 250 ms away take about 500 ms;
 * twice that is spared.
 */
export const SPARE_MS = 1000;

export interface Candidate {
  /** The address group (an IPv4 address, an IPv6 /64). */
  readonly group: string;
  /** When its connection (or upgrade) was accepted. */
  readonly openedAt: number;
}

interface _Group<T> {
  count: number;
  oldest: T;
}

function _heavier<T extends Candidate>(a: _Group<T>, b: _Group<T>, opens: (group: string) => number): boolean {
  if (a.count !== b.count) return a.count > b.count;
  const oa = opens(a.oldest.group);
  const ob = opens(b.oldest.group);
  if (oa !== ob) return oa > ob;
  return a.oldest.openedAt < b.oldest.openedAt;
}

/** The handshake to close among `candidates`; null when there is none. */
export function pickHandshakeVictim<T extends Candidate>(
  candidates: readonly T[],
  now: number,
  opens: (group: string) => number,
): T | null {
  const groups = new Map<string, _Group<T>>();
  for (const c of candidates) {
    const g = groups.get(c.group);
    if (g === undefined) groups.set(c.group, { count: 1, oldest: c });
    else {
      g.count++;
      if (c.openedAt < g.oldest.openedAt) g.oldest = c;
    }
  }
  let best: _Group<T> | null = null;
  let bestSpared: _Group<T> | null = null;
  for (const g of groups.values()) {
    if (now - g.oldest.openedAt >= SPARE_MS) {
      if (best === null || _heavier(g, best, opens)) best = g;
    } else if (bestSpared === null || _heavier(g, bestSpared, opens)) bestSpared = g;
  }
  return (best ?? bestSpared)?.oldest ?? null;
}
