/**
 * The watcher: what the relay hands the frames of watched sessions to (core's
 * WatchTap), and the sessions' models and feeds. The tap only queues, in a queue
 * bounded in frames and bytes; the queue is drained in turns of its own, at most
 * `sliceMs` of decoding every `intervalMs` (4 ms every 50 ms: never more than
 * about 8% of a core, however busy the relay), so relaying never waits for
 * decoding. A turn per frame instead (setTimeout 0) cost the relay a wake-up per
 * update: 280 updates a second took 3.4% of a core to 5.9-11.4%. When the queue
 * is full a frame is dropped and counted, and its session's model is marked stale
 * until the next SetScene.
 */
import type { WatchTap } from "../core/index.ts";
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";
import { parseBroadcast } from "./broadcast.ts";
import type { Limits } from "./model.ts";
import { WatchedSession } from "./session.ts";

export interface WatcherOptions {
  /** Frames waiting to be decoded, at most. */
  maxQueue?: number;
  /** Bytes of those frames, at most (the frames are shared with the relay's queues; this bounds how long they live). */
  maxQueueBytes?: number;
  /** Milliseconds of decoding per turn before yielding to the event loop. */
  sliceMs?: number;
  /** Milliseconds between turns while frames wait (spectators see changes a few times a second anyway). */
  intervalMs?: number;
  limits?: Limits;
  /** How a drain is scheduled (tests run it by hand). */
  schedule?: (run: () => void) => void;
  /** Told when a session's view changed (the HTTP side pushes on its own ticks instead). */
  changed?: (session: string) => void;
  /** Drops, unreadable updates and capped models are logged here, a line per 10 s at most for each. */
  log?: Logger;
}

export interface WatchStats {
  /** Sessions watched (a spectator key exists for each). */
  sessions: number;
  queued: number;
  queuedBytes: number;
  /** Frames dropped because the queue was full. */
  dropped: number;
  /** update_data decoded into an edit, and update_data no Sova could read. */
  decoded: number;
  unreadable: number;
  /** Frames that were not a StateBroadcast the watcher could take apart (never expected). */
  malformed: number;
  /** Times a session's model passed its limits and fell back to the feed only. */
  capped: number;
}

export interface Watcher extends WatchTap {
  readonly stats: WatchStats;
  /** Which sessions are watched from now on; others' models are dropped. */
  watch(sessions: Iterable<string>): void;
  /** The watched session `id`, created on first use; undefined when it is not watched. */
  session(id: string): WatchedSession | undefined;
  /** Feeds a frame (also the tap's `frame`). */
  push(session: string, frame: Uint8Array, at: number): void;
  /** Decodes everything queued now (tests, the replay player). */
  drain(): void;
  /** Writes the counts its log lines hold back and clears their timers (shutdown). */
  stop(): void;
}

interface Item {
  session: string;
  frame: Uint8Array;
  at: number;
  /** Its place among every frame ever queued. */
  seq: number;
}

/** Frames of a session dropped since the last one handled, and the place in the queue they would have had. */
interface Skip {
  count: number;
  after: number;
}

const DEFAULTS = { maxQueue: 4096, maxQueueBytes: 16 << 20, sliceMs: 4, intervalMs: 50 };

export function emptyWatchStats(): WatchStats {
  return { sessions: 0, queued: 0, queuedBytes: 0, dropped: 0, decoded: 0, unreadable: 0, malformed: 0, capped: 0 };
}

/**
 * What the watcher logs: drops and unreadable updates, the first at once, then a line per 10 s at most with
 * the count since the line before, written when the 10 s end even if none comes after (lib/repeats.ts).
 */
function createReports(log: Logger | undefined, o: { maxQueue: number; maxQueueBytes: number }) {
  if (!log) return { dropped() {}, unreadable(_reason: string) {}, capped(_session: string) {}, stop() {} };
  const dropped = createTallyLine(10_000, (n) =>
    log.warn(
      "watch_queue_full",
      `Watching: ${n} updates not decoded, the queue was full (${o.maxQueue} frames or` +
        ` ${o.maxQueueBytes} bytes); their sessions' grids are marked stale until the next SetScene`,
      { dropped: n },
    ),
  );
  // The line's "last" is the reason of the last unreadable update counted in it.
  const unreadable = createTallyLine<string>(10_000, (n, lastReason) =>
    log.info(
      "watch_unreadable",
      `Watching: ${n} updates no Sova instance could read (relayed unchanged, shown as` +
        ` unreadable); the last: ${lastReason}`,
      { unreadable: n, reason: lastReason },
    ),
  );
  return {
    dropped: () => dropped.add(1),
    unreadable: (reason: string) => unreadable.add(1, reason),
    capped(session: string) {
      log.info(
        "watch_capped",
        `Watching session ${session}: its scene passed the spectators' model limits; the page shows the feed` +
          " only until the next SetScene that fits",
        { session },
      );
    },
    stop() {
      dropped.stop();
      unreadable.stop();
    },
  };
}

export function createWatcher(options: WatcherOptions = {}): Watcher {
  const o = { ...DEFAULTS, ...options };
  const schedule = options.schedule ?? ((run: () => void) => setTimeout(run, o.intervalMs));
  let watched = new Set<string>();
  const sessions = new Map<string, WatchedSession>();
  const skipped = new Map<string, Skip>();
  let enqueued = 0;
  let queue: Item[] = [];
  let head = 0;
  let scheduled = false;
  const stats = emptyWatchStats();

  function session(id: string): WatchedSession | undefined {
    if (!watched.has(id)) return undefined;
    let s = sessions.get(id);
    if (!s) {
      s = new WatchedSession(id, o.limits);
      sessions.set(id, s);
    }
    return s;
  }

  const reports = createReports(options.log, o);

  function handle(item: Item): void {
    const s = session(item.session);
    if (!s) return;
    const parts = parseBroadcast(item.frame);
    if (!parts) {
      stats.malformed++;
      return;
    }
    const [decoded, unreadable, capped] = [s.decoded, s.unreadable, s.capped];
    s.update(parts.source, item.at, parts.data);
    stats.decoded += s.decoded - decoded;
    if (s.unreadable > unreadable) {
      stats.unreadable++;
      reports.unreadable(s.feed.at(-1)?.text ?? "");
    }
    if (s.capped && !capped) {
      stats.capped++;
      reports.capped(item.session);
    }
    options.changed?.(item.session);
  }

  function run(budgetMs: number): void {
    const start = performance.now();
    while (head < queue.length) {
      const item = queue[head]!;
      queue[head++] = undefined as unknown as Item;
      stats.queued--;
      stats.queuedBytes -= item.frame.length;
      handle(item);
      if (skipped.size > 0) tellSkipped(item.seq);
      // The clock read every 16 frames: reading it per frame cost as much as a small frame's decoding.
      if ((head & 15) === 0 && performance.now() - start >= budgetMs) break;
    }
    if (head === queue.length) {
      [queue, head] = [[], 0];
      tellSkipped(Number.POSITIVE_INFINITY);
    } else if (head > 1024) [queue, head] = [queue.slice(head), 0];
  }

  /** Drops are told in the feed where they happened: after the last frame queued before them. */
  function tellSkipped(handled: number): void {
    for (const [id, skip] of skipped) {
      if (skip.after > handled) continue;
      skipped.delete(id);
      session(id)?.skipped(skip.count, Date.now());
    }
  }

  function kick(): void {
    if (scheduled) return;
    scheduled = true;
    schedule(() => {
      scheduled = false;
      run(o.sliceMs);
      if (head < queue.length) kick();
    });
  }

  function push(id: string, frame: Uint8Array, at: number): void {
    if (stats.queued >= o.maxQueue || stats.queuedBytes + frame.length > o.maxQueueBytes) {
      stats.dropped++;
      reports.dropped();
      const skip = skipped.get(id);
      if (skip) skip.count++;
      else skipped.set(id, { count: 1, after: enqueued });
      kick();
      return;
    }
    queue.push({ session: id, frame, at, seq: ++enqueued });
    stats.queued++;
    stats.queuedBytes += frame.length;
    kick();
  }

  return {
    stats,
    wants: (id) => watched.has(id),
    frame: push,
    push,
    watch(ids) {
      watched = new Set(ids);
      for (const id of sessions.keys()) if (!watched.has(id)) sessions.delete(id);
      stats.sessions = watched.size;
    },
    session,
    drain: () => run(Number.POSITIVE_INFINITY),
    stop: () => reports.stop(),
  };
}
