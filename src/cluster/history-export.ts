/**
 * Reading the cluster's history back for `sova-relay history export --cluster`:
 * the JetStream stream every node's frames are stored in (src/cluster/history.ts),
 * read for one session, oldest first. A frame's time is when NATS stored it,
 * within a millisecond or so of its arrival at the node that relayed it.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { RelayError } from "../lib/errors.ts";
import { openEnvelope } from "./envelope.ts";
import { type ClusterOptions, connectionOptions } from "./nats-options.ts";

export interface ClusterFrame {
  at: number;
  frame: Uint8Array;
}

type Reach = Pick<ClusterOptions, "servers" | "creds" | "user" | "pass" | "token" | "ca" | "prefix">;

const PREFIX = "sova_relay";

async function withJetStream<T>(o: Reach, fn: (nc: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    // The connection options read only how to reach NATS (servers, credentials, CA); a reader has no secret.
    const reach = { ...o, nodeName: "history export" } as ClusterOptions;
    nc = await connect({ ...connectionOptions(reach), maxReconnectAttempts: 0 });
  } catch (error) {
    throw new RelayError("E_STARTUP", `cannot reach the cluster's NATS (${(error as Error).message})`, {
      cause: error,
    });
  }
  try {
    return await fn(nc);
  } catch (error) {
    if (error instanceof RelayError) throw error;
    throw new RelayError(
      "E_STARTUP",
      `cannot read the cluster's history (${(error as Error).message}); is --history set on its nodes?`,
      { cause: error },
    );
  } finally {
    await nc.close();
  }
}

/** Sessions with history in the cluster, with how many updates each. */
export function clusterSessions(o: Reach): Promise<Map<string, number>> {
  const p = o.prefix ?? PREFIX;
  return withJetStream(o, async (nc) => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(`${p}_history`, { subjects_filter: `${p}.s.>` });
    const out = new Map<string, number>();
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) out.set(subject.slice(p.length + 3), n);
    return out;
  });
}

/** Every stored frame of `session`, oldest first. */
export function readClusterHistory(o: Reach, session: string): Promise<ClusterFrame[]> {
  const p = o.prefix ?? PREFIX;
  const stream = `${p}_history`;
  const subject = `${p}.s.${session}`;
  return withJetStream(o, async (nc) => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream, { subjects_filter: subject });
    const count = info.state.subjects?.[subject] ?? 0;
    if (count === 0) return [];
    const last = info.state.last_seq;
    const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject });
    const out: ClusterFrame[] = [];
    const messages = await consumer.consume({ max_messages: Math.min(count, 1000) });
    for await (const m of messages) {
      const env = openEnvelope(m.data);
      if (env) out.push({ at: Number(m.timestampNanos / 1_000_000n), frame: new Uint8Array(env.frame) });
      if (m.info.pending === 0 || m.seq >= last) break;
    }
    await messages.close();
    return out;
  });
}
