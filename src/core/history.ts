/**
 * Session history for late joiners (docs/protocol.md, "Session history"): the last relayed
 * StateBroadcast frames of each session, bounded by count, bytes and age.
 * Frames are kept exactly as they were sent, so a newcomer gets the original
 * source names and timestamps byte for byte. History outlives its session's
 * instances: a session that empties and fills again keeps it.
 */
export interface HistoryLimits {
  /** Entries per session; 0 turns history off. */
  maxEntries: number;
  maxBytes: number;
  /** 0: no age limit. */
  maxAgeMs: number;
}

export interface HistoryEntry {
  readonly seq: number;
  readonly at: number;
  readonly frame: Uint8Array;
}

export interface SessionHistory {
  entries: HistoryEntry[];
  /** Index of the oldest live entry: eviction moves it instead of shifting the array. */
  head: number;
  bytes: number;
  nextSeq: number;
}

/** What persistence is told; it mirrors the rings, it does not decide. */
export interface HistorySink {
  appended(session: string, entry: HistoryEntry): void;
  /** Every entry of `session` with seq <= `upTo` is gone. */
  evicted(session: string, upTo: number): void;
  /** Write what is queued now. */
  flush?(): void;
}

export interface History {
  readonly enabled: boolean;
  readonly limits: HistoryLimits;
  /**
   * The name of this history's numbering (resumption cursors carry it): the same across restarts while the
   * database is kept, new when it is reset or cleared, so a number never means two frames.
   */
  readonly epoch: string;
  /** Returns the entry's sequence number (0 when history is off). */
  append(session: string, frame: Uint8Array, now: number): number;
  /** The last sequence number given in `session` (0: none). */
  lastSeq(session: string): number;
  /** The entries kept, oldest first (resumption reads a gap from them). */
  entries(session: string, now: number): readonly HistoryEntry[];
  /** The highest sequence number read back from disk at start-up (0: none): entries from before this process. */
  restoredUpTo(session: string): number;
  /** Makes what was appended so far survive a crash (a member that may resume is about to be sent it). */
  durable(): void;
  /** Frames to replay, oldest first. */
  replay(session: string, now: number): Uint8Array[];
  /** Loads an entry read back from disk (no sink call). */
  restore(session: string, entry: HistoryEntry): void;
  sizes(): Map<string, { entries: number; bytes: number }>;
  clear(session?: string): void;
  /** Every live entry, oldest first within a session (persistence writes them back after a failure). */
  each(visit: (session: string, entry: HistoryEntry) => void): void;
}

export function createHistory(
  limits: HistoryLimits,
  sink?: HistorySink,
  epoch: string = crypto.randomUUID().slice(0, 8),
): History {
  const sessions = new Map<string, SessionHistory>();
  const restored = new Map<string, number>();

  function ring(session: string): SessionHistory {
    let h = sessions.get(session);
    if (!h) {
      h = { entries: [], head: 0, bytes: 0, nextSeq: 1 };
      sessions.set(session, h);
    }
    return h;
  }

  function count(h: SessionHistory): number {
    return h.entries.length - h.head;
  }

  /** Drops from the front until every bound holds; tells the sink once. */
  function trim(session: string, h: SessionHistory, now: number, notify: boolean): void {
    let upTo = -1;
    while (count(h) > 0) {
      const oldest = h.entries[h.head]!;
      const tooMany = count(h) > limits.maxEntries;
      const tooBig = h.bytes > limits.maxBytes;
      const tooOld = limits.maxAgeMs > 0 && now - oldest.at > limits.maxAgeMs;
      if (!tooMany && !tooBig && !tooOld) break;
      h.bytes -= oldest.frame.length;
      upTo = oldest.seq;
      h.head++;
    }
    // Compact now and then, so the array does not keep evicted entries alive.
    if (h.head > 1024 && h.head * 2 > h.entries.length) {
      h.entries = h.entries.slice(h.head);
      h.head = 0;
    }
    if (upTo >= 0 && notify) sink?.evicted(session, upTo);
  }

  return {
    enabled: limits.maxEntries > 0,
    limits,
    epoch,
    append(session, frame, now) {
      if (limits.maxEntries === 0) return 0;
      const h = ring(session);
      const entry = { seq: h.nextSeq++, at: now, frame };
      h.entries.push(entry);
      h.bytes += frame.length;
      sink?.appended(session, entry);
      trim(session, h, now, true);
      return entry.seq;
    },
    lastSeq: (session) => (sessions.get(session)?.nextSeq ?? 1) - 1,
    entries(session, now) {
      const h = sessions.get(session);
      if (!h) return [];
      trim(session, h, now, true);
      return h.entries.slice(h.head);
    },
    restoredUpTo: (session) => restored.get(session) ?? 0,
    durable: () => sink?.flush?.(),
    replay(session, now) {
      const h = sessions.get(session);
      if (!h) return [];
      trim(session, h, now, true);
      const out: Uint8Array[] = [];
      for (let i = h.head; i < h.entries.length; i++) out.push(h.entries[i]!.frame);
      return out;
    },
    restore(session, entry) {
      restored.set(session, Math.max(restored.get(session) ?? 0, entry.seq));
      const h = ring(session);
      h.entries.push(entry);
      h.bytes += entry.frame.length;
      h.nextSeq = Math.max(h.nextSeq, entry.seq + 1);
      trim(session, h, Date.now(), true);
    },
    sizes() {
      const out = new Map<string, { entries: number; bytes: number }>();
      for (const [session, h] of sessions) if (count(h) > 0) out.set(session, { entries: count(h), bytes: h.bytes });
      return out;
    },
    each(visit) {
      for (const [session, h] of sessions)
        for (let i = h.head; i < h.entries.length; i++) visit(session, h.entries[i]!);
    },
    clear(session) {
      for (const [id, h] of sessions) {
        if (session !== undefined && id !== session) continue;
        if (count(h) > 0) sink?.evicted(id, h.nextSeq - 1);
        sessions.delete(id);
      }
    },
  };
}
