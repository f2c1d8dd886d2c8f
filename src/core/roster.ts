/**
 * A session's InstanceInfo list, encoded and kept between registrations. Every
 * newcomer is sent the whole list; encoding it afresh for each one made a crowd
 * joining one session cost O(n^2) encoder work (5000 joins: 12.5 M entries, most
 * of a 20 s registration storm). The bytes are reused while nobody joined, left
 * or was active since they were built, and a join appends one entry.
 *
 * Bytes once handed out are never written again: a join writes past them, growth
 * copies into a new buffer and a rebuild starts one. So a newcomer's queue can hold
 * a view of them instead of a copy, and a crowd's pending responses share one list.
 */
import { instanceEntries, type KnownInstance } from "../protocol/messages.ts";

export interface Roster {
  /** The member list the bytes were built for: sessions replace it, never mutate it, on join and leave. */
  members: readonly KnownInstance[] | null;
  /** Each member's lastActivity as encoded, in member order. */
  stamps: number[];
  /** The encoded entries; the first `length` bytes are in use, the rest is room for joins. */
  entries: Uint8Array;
  length: number;
}

export function createRoster(): Roster {
  return { members: null, stamps: [], entries: new Uint8Array(0), length: 0 };
}

function isCurrent(roster: Roster, members: readonly KnownInstance[]): boolean {
  if (roster.members !== members) return false;
  const stamps = roster.stamps;
  for (let i = 0; i < members.length; i++) if (members[i]!.lastActivity !== stamps[i]) return false;
  return true;
}

function rebuild(roster: Roster, members: readonly KnownInstance[]): void {
  roster.members = members;
  roster.stamps = members.map((m) => m.lastActivity);
  roster.entries = instanceEntries(members);
  roster.length = roster.entries.length;
}

/** The encoded entries of `members`, back to back: a view whose bytes never change. */
export function rosterEntries(roster: Roster, members: readonly KnownInstance[]): Uint8Array {
  if (!isCurrent(roster, members)) rebuild(roster, members);
  return roster.entries.subarray(0, roster.length);
}

/** `members` is `previous` plus `joined` at the end: extend the bytes instead of rebuilding them. */
export function rosterJoin(
  roster: Roster,
  previous: readonly KnownInstance[],
  members: readonly KnownInstance[],
  joined: KnownInstance,
): void {
  if (roster.members !== previous) {
    roster.members = null;
    return;
  }
  const entry = instanceEntries([joined]);
  if (roster.length + entry.length > roster.entries.length) {
    const grown = new Uint8Array(Math.max(256, 2 * roster.entries.length, roster.length + entry.length));
    grown.set(roster.entries.subarray(0, roster.length));
    roster.entries = grown;
  }
  roster.entries.set(entry, roster.length);
  roster.length += entry.length;
  roster.stamps.push(joined.lastActivity);
  roster.members = members;
}
