/**
 * Which handshake gives up its slot when every slot is taken (TCP's
 * --max-handshakes, and the WebSocket endpoint's smaller cap).
 *
 * "The oldest goes" let a flood of silent connections from 192 addresses cut
 * players who register a round trip after connecting (a far venue over TLS:
 * 12-14 of 18 got in). So the slot comes from the address group holding the
 * most handshakes, the newcomer counted in its own (between equals, the one
 * that opened the most lately: a flood reconnects, a player connects once;
 * then the one whose oldest waited longest), and within it the oldest.
 * Handshakes younger than SPARE_MS are spared while an address with an older
 * one is left: a player gets the time to send its RegisterInstance.
 *
 * The newcomer is never the one refused: refused at once, a flood's loop
 * reconnects at once and spins (measured: 54,000 refusals and a pair's p99 of
 * 2.5 s in 20 s), while an evicted connection's owner had waited its turn.
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

function _heavier<T extends Candidate>(a: _Group<T>, b: _Group<T>): boolean {
  if (a.count !== b.count) return a.count > b.count;
  if (a.opens !== b.opens) return a.opens > b.opens;
  return a.oldest.openedAt < b.oldest.openedAt;
}

/**
 * The handshake among `candidates` (the newcomer not among them) to close so a newcomer from `group` gets a slot;
 * null when there is none. `opens`: handshakes each group opened lately.
 */
export function pickHandshakeVictim<T extends Candidate>(
  candidates: readonly T[],
  group: string,
  now: number,
  opens: (group: string) => number,
): T | null {
  const groups = new Map<string, _Group<T>>();
  for (const c of candidates) {
    const g = groups.get(c.group);
    if (g === undefined) groups.set(c.group, { count: c.group === group ? 2 : 1, opens: opens(c.group), oldest: c });
    else {
      g.count++;
      if (c.openedAt < g.oldest.openedAt) g.oldest = c;
    }
  }
  let old: _Group<T> | null = null;
  let any: _Group<T> | null = null;
  for (const g of groups.values()) {
    if (any === null || _heavier(g, any)) any = g;
    if (now - g.oldest.openedAt >= SPARE_MS && (old === null || _heavier(g, old))) old = g;
  }
  return (old ?? any)?.oldest ?? null;
}
