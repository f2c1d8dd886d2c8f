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

/** What a group is judged by: more handshakes, then more opened lately, then an older oldest. */
function _heavier(count: number, opens: number, at: number, bCount: number, bOpens: number, bAt: number): boolean {
  if (count !== bCount) return count > bCount;
  if (opens !== bOpens) return opens > bOpens;
  return at < bAt;
}

/**
 * The handshake to close so `newcomer` gets a slot; null when there is none. `groups`: the handshakes by address
 * group, each oldest first, the newcomer among its own; `eligible`: which may be closed; `opens`: handshakes each
 * group opened lately. It runs for every connection of a flood: scalars and forEach, no allocation per group.
 */
export function pickHandshakeVictim<T extends Candidate>(
  groups: ReadonlyMap<string, readonly T[]>,
  newcomer: Candidate,
  now: number,
  eligible: (c: T) => boolean,
  opens: (group: string) => number,
): T | null {
  let old: T | null = null;
  let oldCount = 0;
  let oldOpens = 0;
  let any: T | null = null;
  let anyCount = 0;
  let anyOpens = 0;
  groups.forEach((members, group) => {
    let oldest: T | null = null;
    for (let i = 0; i < members.length && oldest === null; i++) {
      const c = members[i]!;
      if (c !== newcomer && eligible(c)) oldest = c;
    }
    if (oldest === null) return;
    const count = members.length;
    const o = opens(group);
    const at = (oldest as T).openedAt;
    if (any === null || _heavier(count, o, at, anyCount, anyOpens, any.openedAt)) {
      any = oldest;
      anyCount = count;
      anyOpens = o;
    }
    if (now - at < SPARE_MS) return;
    if (old === null || _heavier(count, o, at, oldCount, oldOpens, (old as T).openedAt)) {
      old = oldest;
      oldCount = count;
      oldOpens = o;
    }
  });
  return old ?? any;
}

/** Handshakes by address group, oldest first, with the newcomer in its own (the WebSocket endpoint's few). */
export function byGroup<T extends Candidate>(handshakes: readonly T[], newcomer: T): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const h of [...handshakes, newcomer].sort((a, b) => a.openedAt - b.openedAt)) {
    const g = groups.get(h.group);
    if (g) g.push(h);
    else groups.set(h.group, [h]);
  }
  return groups;
}
