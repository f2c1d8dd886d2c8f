/**
 * StateBroadcast frames between nodes (subject `<prefix>.s.<session>`), each in
 * a small envelope (envelope.ts) with its node's sequence number (sequence.ts).
 */
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../lib/log.ts";
import { createTally } from "../lib/repeats.ts";
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
  /** A frame of a local instance, for the other nodes. */
  broadcast(session: string, frame: Uint8Array): void;
  /** A message on the frame subjects. */
  receive(msg: Msg): void;
}

const UNSENT_LOG_WINDOW_MS = 10_000;

export function createFrames(ctx: FramesContext, log: Logger): Frames {
  const { node, epoch, sequences, counters, history } = ctx;
  const sealer = createSealer(node, epoch);
  const skip = ctx.prefix.length + 3;
  const unsentTally = createTally(UNSENT_LOG_WINDOW_MS);

  /** A frame NATS refused (too big for max_payload, connection closing): counted, logged once per 10 s. */
  function unsent(why: string): void {
    counters.unsent++;
    const missing = unsentTally.add(1, Date.now());
    if (missing > 0) {
      log.warn("cluster_unsent", `${missing} frames not sent to the other nodes (${why})`, {
        node,
        missing,
        reason: why,
      });
    }
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
        return;
      }
      try {
        nc.publish(`${ctx.prefix}.s.${session}`, sealer.seal(q, frame));
        counters.published++;
      } catch (error) {
        unsent((error as Error).message);
      }
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
      ctx.membership.remote?.frame(session, env.frame);
    },
  };
}
