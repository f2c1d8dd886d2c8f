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
 * Groups are read as the caller keeps them (oldest first), nothing is copied:
 * this runs for every connection of a flood.
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

interface _Pick<T> {
  count: number;
  opens: number;
  oldest: T;
}

function _heavier<T extends Candidate>(a: _Pick<T>, b: _Pick<T>): boolean {
  if (a.count !== b.count) return a.count > b.count;
  if (a.opens !== b.opens) return a.opens > b.opens;
  return a.oldest.openedAt < b.oldest.openedAt;
}

/**
 * The handshake to close so `newcomer` gets a slot; null when there is none. `groups`: the handshakes by address
 * group, each oldest first (the newcomer may be among them); `eligible`: which may be closed; `opens`: handshakes each
 * group opened lately.
 */
export function pickHandshakeVictim<T extends Candidate>(
  groups: ReadonlyMap<string, Iterable<T>>,
  newcomer: Candidate,
  now: number,
  eligible: (c: T) => boolean,
  opens: (group: string) => number,
): T | null {
  let old: _Pick<T> | null = null;
  let any: _Pick<T> | null = null;
  for (const [group, members] of groups) {
    let count = group === newcomer.group ? 1 : 0;
    let oldest: T | null = null;
    for (const c of members) {
      if (c === newcomer || !eligible(c)) continue;
      count++;
      oldest ??= c;
    }
    if (oldest === null) continue;
    const g = { count, opens: opens(group), oldest };
    if (any === null || _heavier(g, any)) any = g;
    if (now - oldest.openedAt >= SPARE_MS && (old === null || _heavier(g, old))) old = g;
  }
  return (old ?? any)?.oldest ?? null;
}

/** Handshakes by address group, oldest first, from a list in any order (the WebSocket endpoint's few). */
export function byGroup<T extends Candidate>(handshakes: readonly T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const h of [...handshakes].sort((a, b) => a.openedAt - b.openedAt)) {
    const g = groups.get(h.group);
    if (g) g.push(h);
    else groups.set(h.group, [h]);
  }
  return groups;
}
