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
import { ByteWriter } from "../protocol/msgpack.ts";
import { instanceEntryBound, writeInstanceEntry, type KnownInstance } from "../protocol/messages.ts";

export interface Roster {
  /** The member list the bytes were built for: sessions replace it, never mutate it, on join and leave. */
  members: readonly KnownInstance[] | null;
  /** Each member's lastActivity as encoded, in member order. */
  stamps: number[];
  entries: ByteWriter;
}

export function createRoster(): Roster {
  return { members: null, stamps: [], entries: new ByteWriter(64) };
}

function isCurrent(roster: Roster, members: readonly KnownInstance[]): boolean {
  if (roster.members !== members) return false;
  const stamps = roster.stamps;
  for (let i = 0; i < members.length; i++) if (members[i]!.lastActivity !== stamps[i]) return false;
  return true;
}

function rebuild(roster: Roster, members: readonly KnownInstance[]): void {
  let size = 64;
  for (let i = 0; i < members.length; i++) size += instanceEntryBound(members[i]!);
  const entries = new ByteWriter(size);
  const stamps: number[] = new Array(members.length);
  for (let i = 0; i < members.length; i++) {
    writeInstanceEntry(entries, members[i]!);
    stamps[i] = members[i]!.lastActivity;
  }
  roster.members = members;
  roster.stamps = stamps;
  roster.entries = entries;
}

/** The encoded entries of `members`, back to back: a view whose bytes never change. */
export function rosterEntries(roster: Roster, members: readonly KnownInstance[]): Uint8Array {
  if (!isCurrent(roster, members)) rebuild(roster, members);
  return roster.entries.written();
}

/** `members` is `previous` plus `joined` at the end: extend the bytes instead of rebuilding them. */
export function rosterJoin(roster: Roster, previous: readonly KnownInstance[], members: readonly KnownInstance[], joined: KnownInstance): void {
  if (roster.members !== previous) {
    roster.members = null;
    return;
  }
  writeInstanceEntry(roster.entries, joined);
  roster.stamps.push(joined.lastActivity);
  roster.members = members;
}
