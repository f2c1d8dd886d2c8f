/**
 * A relay as one node of a cluster over NATS (--cluster). Loaded only when the
 * option is given, so a relay without it never pays for the NATS client.
 *
 * Subjects (prefix `sova_relay`):
 *   <p>.m           membership: heartbeats with the node's full member list,
 *                   join/leave as they happen, hello (answer with a heartbeat), bye
 *                   (membership.ts)
 *   <p>.s.<session> StateBroadcast frames, as bytes, in a small envelope
 *                   (node, epoch, seq: envelope.ts, frames.ts, sequence.ts)
 * JetStream KV: the session secret every node shares (secret.ts), name claims
 * (claims.ts); a JetStream stream: the history (history.ts). The connection's
 * life is in connection.ts; this file puts the parts together behind the core's
 * ClusterLink.
 */
import { hostname } from "node:os";
import { waitAtMost } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import type { ClaimResult, ClusterLink, RemoteMembers } from "../core/link.ts";
import { createClaims } from "./claims.ts";
import { openConnection } from "./connection.ts";
import { createFrames } from "./frames.ts";
import { createClusterHistory, type ClusterHistory } from "./history.ts";
import { createMembership, memberRow, type Said } from "./membership.ts";
import type { ClusterOptions } from "./nats-options.ts";
import { createSecretAgreement } from "./secret.ts";
import { createSequences, type Sequences } from "./sequence.ts";
import { type ClusterStatus, createCounters } from "./status.ts";

export type { ClusterOptions } from "./nats-options.ts";
export type { ClusterNodeStatus, ClusterStatus } from "./status.ts";

export interface ClusterNode extends ClusterLink {
  readonly name: string;
  /** Present with --history: the relay's history, kept by NATS. */
  readonly history?: ClusterHistory;
  /**
   * Settles once the node may admit registrations, with the session secret the cluster shares (the core is built
   * with it), or with the RelayError (E_CONFIG: exit 2) of a node that cannot agree.
   */
  readonly ready: Promise<Uint8Array>;
  /** What `ready` gave (undefined before). */
  readonly sessionSecret: Uint8Array | undefined;
  attach(remote: RemoteMembers): void;
  status(): ClusterStatus;
  close(): Promise<void>;
}

export const DEFAULT_HEARTBEAT_MS = 500;
export const DEFAULT_DOWN_AFTER_MS = 2000;

export function defaultNodeName(): string {
  return `${hostname()}-${crypto.randomUUID().slice(0, 6)}`;
}

function historyOf(options: ClusterOptions, prefix: string, log: Logger, sequences: Sequences) {
  const h = options.history;
  if (!h || h.limits.maxEntries <= 0) return undefined;
  return createClusterHistory(
    { prefix, limits: h.limits, sessions: h.sessions, seen: (n, session) => sequences.seen(n, session) },
    log,
  );
}

/** The node's parts, wired to each other; the connection starts at once. */
function assemble(options: ClusterOptions, log: Logger) {
  const prefix = options.prefix ?? "sova_relay";
  const node = options.nodeName;
  const epoch = Date.now();
  const downAfterMs = options.downAfterMs ?? DEFAULT_DOWN_AFTER_MS;
  const enc = new TextEncoder();
  const counters = createCounters();
  const secret = createSecretAgreement(options.secret, log);
  const sequences = createSequences({ node, epoch, sentBy: (n, e, s) => membership.sentBy(n, e, s) }, log);
  const claims = createClaims(
    {
      node,
      epoch,
      alive: (n, e) => membership.alive(n, e),
      mature: () => connection.connected && Date.now() - connection.connectedSince >= downAfterMs,
      untilMature: () => Math.max(50, downAfterMs - (Date.now() - connection.connectedSince)),
    },
    log,
  );
  const history = historyOf(options, prefix, log, sequences);
  /** Every announcement says who sends it, and with which secret. */
  function announce(a: Said): void {
    const body = enc.encode(JSON.stringify({ ...a, n: node, e: epoch, k: secret.fingerprint }));
    try {
      connection.current()?.publish(`${prefix}.m`, body);
    } catch {
      // Closed under us: the status loop says so.
    }
  }
  const membership = createMembership({ node, epoch, downAfterMs, announce, sequences, claims, secret, counters }, log);
  const frames = createFrames(
    { prefix, node, epoch, connection: () => connection.current(), sequences, membership, history, counters },
    log,
  );
  const hello = () => {
    announce({ t: "hello" });
    membership.heartbeat();
  };
  const connection = openConnection(
    { options, prefix, secret, membership, frames, claims, history, counters, hello },
    log,
  );
  return { node, epoch, counters, secret, sequences, claims, history, announce, membership, frames, connection };
}

type Parts = ReturnType<typeof assemble>;

function statusOf(p: Parts): ClusterStatus {
  const { counters, connection } = p;
  return {
    node: p.node,
    connected: connection.connected,
    names_shared: p.claims.kv !== null && connection.connected,
    session_secret: p.secret.state,
    nodes: p.membership.status(Date.now()),
    published: counters.published,
    received: counters.received,
    gaps: { ...p.sequences.gaps },
    unsent: counters.unsent,
    foreign: counters.foreign,
    nodes_down: counters.nodesDown,
    nodes_refused: counters.nodesRefused,
    name_conflicts: p.claims.conflicts,
    disconnects: counters.disconnects,
    history_pending_bytes: p.history?.pendingBytes ?? 0,
  };
}

export function startCluster(options: ClusterOptions, log: Logger): ClusterNode {
  const p = assemble(options, log);
  const { secret, claims, history, announce, membership, frames, connection } = p;
  const hbTimer = setInterval(membership.heartbeat, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  const downTimer = setInterval(() => membership.sweep(Date.now()), 100);

  return {
    name: p.node,
    history,
    ready: secret.ready,
    get sessionSecret() {
      return secret.secret ?? undefined;
    },
    attach: membership.attach,
    origin: `${p.node}:${p.epoch}`,
    async claim(session, key, takeOver = false): Promise<ClaimResult> {
      if (connection.resuming) await waitAtMost(connection.resuming, 3000);
      // A resumption: the name is the member's (its secret said so), and its gap comes from the relay's log.
      if (takeOver) return claims.claim(session, key, true);
      const [result] = await Promise.all([claims.claim(session, key), history?.prepare(session)]);
      if (result === "taken") history?.cancel(session);
      return result;
    },
    // A registration given up after its claim (its connection reset, or it was refused): its replay is not wanted.
    release(session, key) {
      if (claims.release(session, key)) history?.cancel(session);
    },
    joined(inst) {
      announce({ t: "join", m: [memberRow(inst)] });
    },
    left(inst, key) {
      claims.release(inst.session.id, key);
      announce({ t: "leave", m: [[inst.session.id, inst.idText, inst.name, "", 0, 0]] });
    },
    broadcast: (inst, frame) => frames.broadcast(inst.session.id, frame),
    afterPublished: (done) => frames.afterPublished(done),
    status: () => statusOf(p),
    async close() {
      clearInterval(hbTimer);
      clearInterval(downTimer);
      await connection.close(() => announce({ t: "bye" }));
      // After the close: a frame refused while draining is still counted in the last line.
      frames.stop();
      p.sequences.stop();
    },
  };
}
