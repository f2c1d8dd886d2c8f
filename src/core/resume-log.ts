/**
 * A session's resumption log (docs/resume.md): while a session has a member
 * that may resume, every StateBroadcast it sees is kept here with its place in
 * its stream (`origin`, `q`) and a number of this relay's own (`n`, which the
 * tunnel acknowledges). A gap is what lies past a tunnel's cursor; it can be
 * filled only when nothing past the cursor is missing here, which `findGap`
 * checks stream by stream before anything is sent.
 *
 * The entries hold the frames the broadcast already made (shared, not copied),
 * so the log costs its frames' bytes only while no one else holds them.
 */

export interface LogEntry {
  readonly origin: string;
  readonly q: number;
  /** This relay's number for the entry (0: read back from history, never acknowledged). */
  readonly n: number;
  readonly at: number;
  readonly frame: Uint8Array;
  /** The sending instance's ID when it was a member here; null for other nodes' frames and history. */
  readonly source: string | null;
}

export interface ResumeLog {
  entries: LogEntry[];
  /** Index of the oldest live entry: eviction moves it instead of shifting the array. */
  head: number;
  /** What the entries cost: their frames' bytes and each entry's own record (ENTRY_COST). */
  bytes: number;
  nextN: number;
}

/** An entry's record and its slot in the array, beside its frame (measured under Bun 1.4.5: about 76 bytes). */
export const ENTRY_COST = 96;

export interface TrimBounds {
  maxBytes: number;
  /** Entries older than this are dropped. */
  maxAgeMs: number;
  /** Every entry up to this n is passed on by everyone who could need it (0: keep them). */
  ackedN: number;
}

/** A stream's last number, per origin. */
export type Position = Map<string, number>;

export function createLog(): ResumeLog {
  return { entries: [], head: 0, bytes: 0, nextN: 1 };
}

export function logAppend(
  log: ResumeLog,
  origin: string,
  q: number,
  frame: Uint8Array,
  at: number,
  source: string | null,
): LogEntry {
  const entry: LogEntry = { origin, q, n: log.nextN++, at, frame, source };
  log.entries.push(entry);
  log.bytes += frame.length + ENTRY_COST;
  return entry;
}

/**
 * Drops entries from the front while a bound is passed; returns how many went only for the byte bound before
 * being acknowledged (a tunnel may still need them: a loss).
 */
export function logTrim(log: ResumeLog, now: number, bounds: TrimBounds): number {
  let lost = 0;
  while (log.head < log.entries.length) {
    const oldest = log.entries[log.head]!;
    const acked = oldest.n <= bounds.ackedN;
    const old = now - oldest.at > bounds.maxAgeMs;
    if (!acked && !old && log.bytes <= bounds.maxBytes) break;
    if (!acked && !old) lost++;
    log.bytes -= oldest.frame.length + ENTRY_COST;
    log.head++;
  }
  // Compact now and then, so the array does not keep evicted entries alive.
  if (log.head > 256 && log.head * 2 > log.entries.length) {
    log.entries = log.entries.slice(log.head);
    log.head = 0;
  }
  return lost;
}

export function logEntries(log: ResumeLog): LogEntry[] {
  return log.entries.slice(log.head);
}

export interface Gap {
  /** What the tunnel has not seen, in this relay's order: frames to send. */
  readonly frames: LogEntry[];
  /** Entries past the tunnel's acknowledged edits that are its own: counted as consumed, never sent back. */
  readonly own: number;
}

/**
 * What lies past `cursor` in `entries`, or null when some of it is not there: for every stream this relay knows
 * (`known`), each number after the cursor must appear, in order and without a hole. Streams the cursor names and
 * this relay does not know have nothing newer here. `isOwn` says which entries came from the resuming instance;
 * `ownAcked` is where, per stream, its acknowledged edits end (from its registration on): its own entries past that
 * are counted, wherever the cursor is (a later frame of the same stream may have reached it before the ack did).
 */
export function findGap(
  entries: readonly LogEntry[],
  cursor: Position,
  known: Position,
  ownAcked: Position,
  isOwn: (e: LogEntry) => boolean,
): Gap | null {
  const next = new Map<string, number>();
  const seen = (origin: string) => cursor.get(origin) ?? 0;
  const start = (origin: string) => Math.min(seen(origin), ownAcked.get(origin) ?? seen(origin)) + 1;
  const frames: LogEntry[] = [];
  let own = 0;
  for (const e of entries) {
    const expected = next.get(e.origin) ?? start(e.origin);
    if (e.q < expected) continue;
    if (e.q > expected) return null;
    next.set(e.origin, expected + 1);
    if (isOwn(e)) {
      if (e.q > (ownAcked.get(e.origin) ?? seen(e.origin))) own++;
    } else if (e.q > seen(e.origin)) frames.push(e);
  }
  for (const [origin, last] of known) {
    const reached = (next.get(origin) ?? start(origin)) - 1;
    if (reached < last && last > seen(origin)) return null;
  }
  return { frames, own };
}

/** A cursor from the wire, bounded: a stranger cannot make the relay walk a huge one. */
export const MAX_CURSOR_ENTRIES = 64;

export function positionOf(entries: ReadonlyArray<readonly [string, bigint]>): Position | null {
  if (entries.length > MAX_CURSOR_ENTRIES) return null;
  const out: Position = new Map();
  for (const [origin, q] of entries) {
    if (q > BigInt(Number.MAX_SAFE_INTEGER) || origin.length > 256) return null;
    out.set(origin, Math.max(out.get(origin) ?? 0, Number(q)));
  }
  return out;
}

export function cursorOf(position: Position): Array<[string, bigint]> {
  return [...position].map(([origin, q]) => [origin, BigInt(q)]);
}
