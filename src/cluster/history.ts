/**
 * Session history kept once for the whole cluster: a file-backed JetStream
 * stream listens on the frame subjects themselves, so every frame any node
 * publishes is stored once by NATS, in its envelope (node/epoch/seq), and no
 * node keeps a copy. Limits: --history per session (max_msgs_per_subject),
 * --history-age (max_age), --history-bytes per session (applied at replay; the
 * stream holds at most that times the number of sessions).
 *
 * A newcomer's replay must meet its live frames with no gap and no duplicate.
 * While its registration waits (the name claim), this node records the frames
 * it sees for that session and reads the stream; at the moment of registering,
 * the replay is the stream's frames this node has already seen live (sequence
 * <= the last seen from that sender), plus the recorded ones the read missed.
 * Anything newer has not arrived here yet and will come live.
 *
 * What is kept meanwhile is bounded in bytes, not only in count: one address
 * resetting a registration every 5 s while a session sent 256 KiB edits held
 * --history x --max-message-size (380-430 MB on a node given 128 MB). Both the
 * recording and the stream's read keep the newest frames within --history-bytes
 * (and --history), so a session's waiting registrations hold at most twice
 * --history-bytes; and a registration abandoned before its claim is answered
 * (its connection reset) cancels its share at once (`cancel`, called through the
 * node's `release`), instead of keeping the recording for PREPARED_TTL_MS.
 */
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { withTimeout } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import type { History, HistoryLimits } from "../core/history.ts";
import { openEnvelope } from "./envelope.ts";

export interface SeenFrom {
  epoch: number;
  last: number;
}

interface Stamped {
  n: string;
  e: number;
  q: number;
  frame: Uint8Array;
}

/** Frames kept newest last, within a count and a byte bound: the oldest go first. */
class Kept {
  frames: Stamped[] = [];
  bytes = 0;
  private head = 0;
  constructor(private readonly limits: HistoryLimits) {}

  push(x: Stamped): void {
    this.frames.push(x);
    this.bytes += x.frame.length;
    while (
      this.frames.length - this.head > 0 &&
      (this.bytes > this.limits.maxBytes || this.frames.length - this.head > this.limits.maxEntries)
    ) {
      this.bytes -= this.frames[this.head]!.frame.length;
      this.frames[this.head++] = undefined as never;
    }
    if (this.head > 64 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
  }

  live(): Stamped[] {
    return this.head === 0 ? this.frames : this.frames.slice(this.head);
  }
}

interface Pending {
  /** Registrations of this session waiting for their replay. */
  waiting: number;
  stored: Kept;
  recorded: Kept;
  timer: Timer;
}

export interface ClusterHistory extends History {
  /** Called on every (re)connect: makes sure the stream exists with these limits. */
  connected(nc: NatsConnection): Promise<void>;
  /** The stream is in use (false: JetStream unavailable, or not connected). */
  readonly ready: boolean;
  disconnected(): void;
  /** Before a registration: record live frames of `session` and read the stream. */
  prepare(session: string): Promise<void>;
  /** The registration did not happen. */
  cancel(session: string): void;
  /** A frame this node saw (received, or published itself). */
  record(session: string, n: string, e: number, q: number, frame: Uint8Array): void;
  /** Bytes held for registrations waiting for their replay (bounded by twice --history-bytes per session). */
  readonly pendingBytes: number;
}

const READ_TIMEOUT_MS = 3000;
/** A prepared replay nobody took (the connection went away) is dropped after this. */
const PREPARED_TTL_MS = 15_000;

/**
 * The replay: the stream's frames this node has already seen live, then the recorded ones the read
 * missed, the newest that fit the per-session bounds.
 */
function _merged(p: Pending, limits: HistoryLimits, seen: (n: string) => SeenFrom | undefined): Uint8Array[] {
  const out: Stamped[] = [];
  const keys = new Set<string>();
  for (const x of p.stored.live()) {
    const s = x.n ? seen(x.n) : undefined;
    // Not seen here yet: it is on its way and will arrive live.
    if (s && (x.e > s.epoch || (x.e === s.epoch && x.q > s.last))) continue;
    keys.add(`${x.n}\u0000${x.e}\u0000${x.q}`);
    out.push(x);
  }
  for (const x of p.recorded.live()) if (!keys.has(`${x.n}\u0000${x.e}\u0000${x.q}`)) out.push(x);
  let start = Math.max(0, out.length - limits.maxEntries);
  let bytes = 0;
  for (let i = out.length - 1; i >= start; i--) {
    bytes += out[i]!.frame.length;
    if (bytes > limits.maxBytes) {
      start = i + 1;
      break;
    }
  }
  return out.slice(start).map((x) => x.frame);
}

/** What the stream holds under `subject` (one session), read up to where it ended when the read began. */
async function _read(
  js: JetStreamClient | null,
  stream: string,
  subject: string,
  limits: HistoryLimits,
): Promise<Kept> {
  const out = new Kept(limits);
  if (!js) return out;
  const jsm = await js.jetstreamManager();
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  const count = info.state.subjects?.[subject] ?? 0;
  if (count === 0) return out;
  // Read up to where the stream was now; later frames are recorded live meanwhile
  // (the recording started before this), so a busy session cannot keep the read going.
  const lastSeq = info.state.last_seq;
  // One filter subject: nats-server 2.9 refuses filter_subjects arrays.
  const consumer = await js.consumers.get(stream, { filter_subjects: subject });
  const messages = await consumer.consume({ max_messages: Math.min(count, 1000) });
  for await (const m of messages) {
    const env = openEnvelope(m.data);
    if (env) out.push({ n: env.node, e: env.epoch, q: env.seq, frame: env.frame });
    if (m.info.pending === 0 || m.seq >= lastSeq) break;
  }
  await messages.close();
  return out;
}

export function createClusterHistory(
  options: {
    prefix: string;
    limits: HistoryLimits;
    sessions: number;
    seen: (n: string, session: string) => SeenFrom | undefined;
  },
  log: Logger,
): ClusterHistory {
  const { limits, prefix } = options;
  const stream = `${prefix}_history`;
  let js: JetStreamClient | null = null;
  const pending = new Map<string, Pending>();

  const history: ClusterHistory = {
    enabled: limits.maxEntries > 0,
    limits,
    // Resumption in a cluster numbers frames by their node's stream (core/link.ts), not by history.
    epoch: "",
    lastSeq: () => 0,
    entries: () => [],
    restoredUpTo: () => 0,
    durable() {},
    // The stream stores what nodes publish: nothing to do on the relay's side.
    append: () => 0,
    restore() {},
    sizes: () => new Map(),
    clear() {},
    each() {},
    replay(session) {
      const p = pending.get(session);
      if (!p) return [];
      if (--p.waiting <= 0) {
        clearTimeout(p.timer);
        pending.delete(session);
      }
      return _merged(p, limits, (n) => options.seen(n, session));
    },
    async connected(nc) {
      js = null;
      try {
        const jsm = await jetstreamManager(nc);
        const config = {
          subjects: [`${prefix}.s.>`],
          storage: "file",
          max_msgs_per_subject: limits.maxEntries,
          max_age: limits.maxAgeMs > 0 ? nanos(limits.maxAgeMs) : 0,
          max_bytes: limits.maxBytes * Math.max(1, options.sessions),
          discard: "old",
          num_replicas: 1,
        } as const;
        try {
          await jsm.streams.update(stream, config as never);
        } catch {
          await jsm.streams.add({ name: stream, ...config } as never);
        }
        js = jetstream(nc);
        log.info(
          "cluster_history",
          `Cluster history in JetStream stream ${stream} (${limits.maxEntries} updates per session)`,
          { stream },
        );
      } catch (error) {
        log.warn(
          "cluster_history_unavailable",
          `JetStream stream for history unavailable (${(error as Error).message}):` +
            ` newcomers get only what this node saw`,
          {
            reason: (error as Error).message,
          },
        );
      }
    },
    disconnected() {
      js = null;
    },
    get ready() {
      return js !== null;
    },
    async prepare(session) {
      let p = pending.get(session);
      if (!p) {
        p = {
          waiting: 0,
          stored: new Kept(limits),
          recorded: new Kept(limits),
          timer: setTimeout(() => pending.delete(session), PREPARED_TTL_MS),
        };
        pending.set(session, p);
      }
      p.waiting++;
      const mine = p;
      try {
        mine.stored = await withTimeout(_read(js, stream, `${prefix}.s.${session}`, limits), READ_TIMEOUT_MS);
      } catch (error) {
        log.warn(
          "cluster_history_read_failed",
          `Reading session history from JetStream failed (${(error as Error).message});` +
            ` the newcomer gets what this node saw meanwhile`,
          {
            session,
            reason: (error as Error).message,
          },
        );
      }
    },
    cancel(session) {
      const p = pending.get(session);
      if (p && --p.waiting <= 0) {
        clearTimeout(p.timer);
        pending.delete(session);
      }
    },
    record(session, n, e, q, frame) {
      pending.get(session)?.recorded.push({ n, e, q, frame });
    },
    get pendingBytes() {
      let n = 0;
      for (const p of pending.values()) n += p.stored.bytes + p.recorded.bytes;
      return n;
    },
  };
  return history;
}
