/**
 * Which handshake gives up its slot when every slot is taken (TCP's
 * --max-handshakes, and the WebSocket endpoint's smaller cap), or whether the
 * newcomer is the one refused.
 *
 * "The oldest goes" let a flood of silent connections from 192 addresses cut
 * players who register a round trip after connecting (a far venue over TLS:
 * 12-14 of 18 got in). So a newcomer takes the slot of an address holding more
 * handshakes than its own would (between equals, the one that opened more
 * lately: a flood reconnects, a player connects once), its oldest, sparing
 * handshakes younger than SPARE_MS while an older one will do. When no address
 * is heavier, it takes the oldest handshake older than SPARE_MS, as before;
 * failing that it is refused: a flood's own reconnections then meet refusals
 * instead of evicting each other in a loop.
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
  opens: number;
  oldest: T;
}

function _heavier(a: { count: number; opens: number }, b: { count: number; opens: number }): boolean {
  return a.count !== b.count ? a.count > b.count : a.opens > b.opens;
}

/**
 * The handshake to close among `candidates` so a newcomer from `group` gets a slot; null when the newcomer
 * should be refused instead. `opens`: handshakes each group opened lately (the newcomer's included).
 */
export function pickHandshakeVictim<T extends Candidate>(
  candidates: readonly T[],
  group: string,
  now: number,
  opens: (group: string) => number,
): T | null {
  const groups = new Map<string, _Group<T>>();
  let oldestOld: T | null = null;
  for (const c of candidates) {
    const g = groups.get(c.group);
    if (g === undefined) groups.set(c.group, { count: 1, opens: opens(c.group), oldest: c });
    else {
      g.count++;
      if (c.openedAt < g.oldest.openedAt) g.oldest = c;
    }
    if (now - c.openedAt >= SPARE_MS && (oldestOld === null || c.openedAt < oldestOld.openedAt)) oldestOld = c;
  }
  const mine = { count: (groups.get(group)?.count ?? 0) + 1, opens: opens(group) };
  let old: _Group<T> | null = null;
  let young: _Group<T> | null = null;
  for (const g of groups.values()) {
    if (!_heavier(g, mine)) continue;
    if (now - g.oldest.openedAt >= SPARE_MS) {
      if (old === null || _heavier(g, old)) old = g;
    } else if (young === null || _heavier(g, young)) young = g;
  }
  return (old ?? young)?.oldest ?? oldestOld;
}
