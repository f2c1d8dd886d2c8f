/**
 * StateBroadcast frames between nodes (subject `<prefix>.s.<session>`), each in
 * a small envelope (envelope.ts) with its node's sequence number (sequence.ts).
 */
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";
import { createSealer, openEnvelope } from "./envelope.ts";
import type { ClusterHistory } from "./history.ts";
import type { Membership } from "./membership.ts";
import type { Sequences } from "./sequence.ts";
import type { ClusterCounters } from "./status.ts";

export interface FramesContext {
  prefix: string;
  node: string;
  epoch: number;
  /** The connection to publish on, or null while NATS is unreachable. */
  connection(): NatsConnection | null;
  sequences: Sequences;
  membership: Membership;
  history?: ClusterHistory;
  counters: ClusterCounters;
}

export interface Frames {
  /** A frame of a local instance, for the other nodes; returns its number in this node's stream of the session. */
  broadcast(session: string, frame: Uint8Array): number;
  /** `done` once every frame published so far has reached the server (or cannot), in call order. */
  afterPublished(done: () => void): void;
  /** A message on the frame subjects. */
  receive(msg: Msg): void;
  /** Writes the count its log line holds back and clears its timer (the node's close). */
  stop(): void;
}

const UNSENT_LOG_WINDOW_MS = 10_000;

export function createFrames(ctx: FramesContext, log: Logger): Frames {
  const { node, epoch, sequences, counters, history } = ctx;
  const sealer = createSealer(node, epoch);
  const skip = ctx.prefix.length + 3;
  // The reason is the last one counted; what the 10 s held is written when they end.
  const unsentLine = createTallyLine<string>(UNSENT_LOG_WINDOW_MS, (missing, why) =>
    log.warn("cluster_unsent", `${missing} frames not sent to the other nodes (${why})`, {
      node,
      missing,
      reason: why,
    }),
  );

  /** A frame NATS refused (too big for max_payload, connection closing): counted, logged once per 10 s. */
  function unsent(why: string): void {
    counters.unsent++;
    unsentLine.add(1, why);
  }

  /** Acknowledgements waiting for the server to have every frame published before them (afterPublished). */
  let waiting: Array<() => void> = [];
  function flushThen(): void {
    const due = waiting;
    waiting = [];
    const done = () => {
      for (const f of due) f();
    };
    const nc = ctx.connection();
    // Not connected: those frames were never sent (counted as unsent); nothing better comes of waiting.
    if (!nc) return done();
    // The server answers a flush after every message sent before it: flushes resolve in order, and so do acks.
    nc.flush().then(done, done);
  }

  return {
    broadcast(session, frame) {
      const q = sequences.next(session);
      history?.record(session, node, epoch, q, frame);
      // Sent only while connected: frames buffered across an outage would reach
      // the others late, out of place; the sequence number still moves, so they see the gap.
      const nc = ctx.connection();
      if (!nc) {
        counters.unsent++;
        return q;
      }
      try {
        nc.publish(`${ctx.prefix}.s.${session}`, sealer.seal(q, frame));
        counters.published++;
      } catch (error) {
        unsent((error as Error).message);
      }
      return q;
    },
    afterPublished(done) {
      // One flush per turn of the event loop, whatever the number of edits in it.
      if (waiting.push(done) === 1) queueMicrotask(flushThen);
    },
    receive(msg) {
      counters.received++;
      const session = msg.subject.slice(skip);
      const env = openEnvelope(msg.data);
      if (!env) {
        counters.foreign++;
        return;
      }
      sequences.check(env.node, env.epoch, session, env.seq, true);
      history?.record(session, env.node, env.epoch, env.seq, env.frame);
      ctx.membership.remote?.frame(session, env.frame, `${env.node}:${env.epoch}`, env.seq);
    },
    stop: () => unsentLine.stop(),
  };
}
