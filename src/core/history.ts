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
}

export interface History {
  readonly enabled: boolean;
  readonly limits: HistoryLimits;
  append(session: string, frame: Uint8Array, now: number): void;
  /** Frames to replay, oldest first. */
  replay(session: string, now: number): Uint8Array[];
  /** Loads an entry read back from disk (no sink call). */
  restore(session: string, entry: HistoryEntry): void;
  sizes(): Map<string, { entries: number; bytes: number }>;
  clear(session?: string): void;
}

export function createHistory(limits: HistoryLimits, sink?: HistorySink): History {
  const sessions = new Map<string, SessionHistory>();

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
    append(session, frame, now) {
      if (limits.maxEntries === 0) return;
      const h = ring(session);
      const entry = { seq: h.nextSeq++, at: now, frame };
      h.entries.push(entry);
      h.bytes += frame.length;
      sink?.appended(session, entry);
      trim(session, h, now, true);
    },
    replay(session, now) {
      const h = sessions.get(session);
      if (!h) return [];
      trim(session, h, now, true);
      const out: Uint8Array[] = [];
      for (let i = h.head; i < h.entries.length; i++) out.push(h.entries[i]!.frame);
      return out;
    },
    restore(session, entry) {
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
    clear(session) {
      for (const [id, h] of sessions) {
        if (session !== undefined && id !== session) continue;
        if (count(h) > 0) sink?.evicted(id, h.nextSeq - 1);
        sessions.delete(id);
      }
    },
  };
}
