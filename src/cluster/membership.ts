/**
 * Who else is in the cluster, and which of their instances are in which session
 * (subject `<prefix>.m`). Every node sends a heartbeat with its full member list
 * each half second, and join/leave as they happen; a node not heard for the down
 * timeout is declared down (its members leave, its names are freed). Each node
 * start has an epoch, so a restarted node's old members are dropped at once. A
 * node whose session secret differs from this one's (its announcements carry a
 * fingerprint: secret.ts) shares no session with it and is kept out, loudly.
 */
import { validate as validateUuid } from "uuid";
import type { Logger } from "../lib/log.ts";
import type { Instance } from "../core/index.ts";
import type { RemoteMember, RemoteMembers } from "../core/link.ts";
import { nameKey } from "../core/names.ts";
import type { Claims } from "./claims.ts";
import type { PeerSecret, SecretAgreement } from "./secret.ts";
import type { Sequences } from "./sequence.ts";
import type { ClusterCounters, ClusterNodeStatus } from "./status.ts";

/** [session, id, name, version, connectedAt, lastActivity] */
export type MemberRow = [string, string, string, string, number, number];

export interface Announcement {
  t: "hb" | "join" | "leave" | "hello" | "bye";
  n: string;
  e: number;
  /** The sender's session-secret fingerprint. */
  k?: string;
  m?: MemberRow[];
  /** Heartbeats: the sender's last frame sequence number per session, so a lost last frame is seen too. */
  q?: Record<string, number>;
}

/** What a part of the node announces; the node adds who it is. */
export type Said = Omit<Announcement, "n" | "e" | "k">;

interface RemoteNode {
  name: string;
  epoch: number;
  lastHeard: number;
  members: Map<string, RemoteMember>;
  /** Its last frame sequence number per session, as its latest heartbeat said. */
  sent: Record<string, number>;
}

export interface MembershipContext {
  node: string;
  epoch: number;
  downAfterMs: number;
  announce(a: Said): void;
  sequences: Sequences;
  claims: Claims;
  secret: SecretAgreement;
  counters: ClusterCounters;
}

export interface Membership {
  /** The relay to tell; members heard before it was attached are told at once. */
  attach(remote: RemoteMembers): void;
  readonly remote: RemoteMembers | null;
  heartbeat(): void;
  receive(a: Announcement): void;
  /** Declares down the nodes not heard for the down timeout. */
  sweep(now: number): void;
  /** Whether `node` at `epoch` (this node too) is alive as far as this node knows. */
  alive(node: string, epoch: number): boolean;
  /** What `node`'s last heartbeat at `epoch` said it had sent in `session` (null: no such heartbeat). */
  sentBy(node: string, epoch: number, session: string): number | null;
  status(now: number): ClusterNodeStatus[];
}

export function memberRow(inst: Instance): MemberRow {
  return [inst.session.id, inst.idText, inst.name, inst.version, inst.connectedAt, inst.lastActivity];
}

/**
 * Records a member row, telling the relay of a new member or of its activity; a row no relay writes (ids are
 * randomUUID()s) is ignored whole and counted.
 */
function addMember(r: RemoteNode, row: unknown, remote: RemoteMembers | null, counters: ClusterCounters): boolean {
  if (!Array.isArray(row) || typeof row[0] !== "string" || !validateUuid(row[1]) || typeof row[2] !== "string") {
    counters.foreign++;
    return false;
  }
  const [session, id, name, version, connectedAt, lastActivity] = row as MemberRow;
  const known = r.members.get(id);
  if (known) {
    if (known.lastActivity !== lastActivity) {
      known.lastActivity = lastActivity;
      remote?.activity(session, id, lastActivity);
    }
    return true;
  }
  const m: RemoteMember = { node: r.name, session, id, name, version, connectedAt, lastActivity };
  r.members.set(id, m);
  remote?.joined(m);
  return true;
}

/**
 * Which nodes' announcements are heard. A node start whose secret differs is kept out when this node has token
 * sessions (they would split), and only reported when it has none; one that says nothing of its secret (a relay from
 * before fingerprints) is heard, with a warning when this node has tokens. Said once per node start.
 */
function peerFilter(ctx: MembershipContext, log: Logger) {
  /** name -> the epoch judged, the verdict, and when last heard (forgotten after the down timeout). */
  const judged = new Map<string, { epoch: number; admit: boolean; lastHeard: number }>();
  const { secret, counters } = ctx;

  function report(a: Announcement, peer: PeerSecret): void {
    if (peer === "unsaid") {
      log.warn(
        "cluster_node_refused",
        `Node ${a.n} does not say which session secret it uses (an older relay?): players with one token on it` +
          " may be in other sessions than here; upgrade it",
        { node: a.n },
      );
      return;
    }
    const why = `Node ${a.n} uses another session secret (players with one token would be split)`;
    const fix = "give every node the same secret (JetStream KV, or the same --cluster-secret)";
    if (secret.strict)
      log.error("cluster_node_refused", `${why}: kept out of this node's sessions; ${fix}`, { node: a.n });
    else
      log.warn("cluster_node_refused", `${why}; this node has no token sessions, so it still hears it; ${fix}`, {
        node: a.n,
      });
  }

  return {
    admitted(a: Announcement, now: number): boolean {
      const known = judged.get(a.n);
      if (known && known.epoch === a.e) {
        known.lastHeard = now;
        return known.admit;
      }
      const peer = secret.peer(a.k);
      if (peer === "same" || (peer === "unsaid" && !secret.strict)) return true;
      const admit = peer === "unsaid" || !secret.strict;
      judged.set(a.n, { epoch: a.e, admit, lastHeard: now });
      if (!admit) counters.nodesRefused++;
      report(a, peer);
      return admit;
    },
    sweep(now: number): void {
      for (const [name, d] of judged) if (now - d.lastHeard > ctx.downAfterMs) judged.delete(name);
    },
  };
}

export function createMembership(ctx: MembershipContext, log: Logger): Membership {
  const { node, epoch, counters } = ctx;
  const nodes = new Map<string, RemoteNode>();
  const peers = peerFilter(ctx, log);
  let remote: RemoteMembers | null = null;
  let nameClashLogged = false;

  function heartbeat(): void {
    if (remote) ctx.announce({ t: "hb", m: remote.locals().map(memberRow), q: ctx.sequences.sent() });
  }

  function dropNode(r: RemoteNode, why: string, timedOut = false): void {
    nodes.delete(r.name);
    if (timedOut) counters.nodesDown++;
    for (const m of r.members.values()) remote?.left(m.session, m.id);
    // Claimed by their node under their key, so freed under it.
    ctx.claims.freeNode(
      r.name,
      r.epoch,
      [...r.members.values()].map((m) => [m.session, nameKey(m.name)] as const),
    );
    ctx.sequences.forget(r.name);
    log.warn(
      "cluster_node_down",
      `Node ${r.name} ${why}: its ${r.members.size} instances are gone from their sessions`,
      { node: r.name, instances: r.members.size, reason: why },
    );
  }

  function onHeartbeat(r: RemoteNode, a: Announcement, rows: unknown[], isNew: boolean): void {
    if (a.q && typeof a.q === "object") {
      // Frames go before the heartbeat that counts them: a count past what arrived is a loss.
      if (!isNew)
        for (const [session, last] of Object.entries(a.q)) ctx.sequences.check(a.n, a.e, session, last, false);
      r.sent = a.q;
    }
    const present = new Set<string>();
    for (const m of rows) if (addMember(r, m, remote, counters)) present.add((m as MemberRow)[1]);
    for (const [id, m] of r.members) {
      if (!present.has(id)) {
        r.members.delete(id);
        remote?.left(m.session, id);
      }
    }
  }

  function receive(a: Announcement): void {
    if (typeof a?.n !== "string" || typeof a.e !== "number") return;
    if (a.n === node) {
      // Our own messages never come back (noEcho): this is another relay with our --node-name.
      if (a.e !== epoch && !nameClashLogged) {
        nameClashLogged = true;
        log.error(
          "cluster_node_name_clash",
          `Another relay in the cluster uses the node name ${node}: give each relay its own --node-name`,
          { node },
        );
      }
      return;
    }
    const now = Date.now();
    let r = nodes.get(a.n);
    if (r && a.e < r.epoch) return; // a message from a node start we know has ended
    if (r && a.e > r.epoch) {
      dropNode(r, "restarted");
      r = undefined;
    }
    if (a.t === "bye") {
      if (r) dropNode(r, "left the cluster");
      return;
    }
    const isNew = !r;
    if (!r) {
      if (!peers.admitted(a, now)) return;
      r = { name: a.n, epoch: a.e, lastHeard: now, members: new Map(), sent: {} };
      nodes.set(a.n, r);
      log.info("cluster_node_up", `Node ${a.n} joined the cluster`, { node: a.n });
      // It may have missed our members (or this is our view coming back after a partition).
      heartbeat();
    }
    r.lastHeard = now;
    const rows = Array.isArray(a.m) ? a.m : [];
    if (a.t === "hb") onHeartbeat(r, a, rows, isNew);
    else if (a.t === "join") for (const m of rows) addMember(r, m, remote, counters);
    else if (a.t === "leave") {
      for (const [session, id] of rows) if (r.members.delete(id)) remote?.left(session, id);
    } else if (a.t === "hello") {
      heartbeat();
      void ctx.claims.reclaimAll();
    }
  }

  return {
    attach(r) {
      remote = r;
      for (const n of nodes.values()) for (const m of n.members.values()) r.joined(m);
    },
    get remote() {
      return remote;
    },
    heartbeat,
    receive,
    sweep(now) {
      for (const r of [...nodes.values()])
        if (now - r.lastHeard > ctx.downAfterMs) dropNode(r, `not heard for ${ctx.downAfterMs / 1000} s`, true);
      peers.sweep(now);
    },
    alive: (n, e) => (n === node ? e === epoch : nodes.get(n)?.epoch === e),
    sentBy(n, e, session) {
      const r = nodes.get(n);
      return r && r.epoch === e ? (r.sent[session] ?? 0) : null;
    },
    status: (now) =>
      [...nodes.values()].map((r) => ({ name: r.name, members: r.members.size, last_heard_ms: now - r.lastHeard })),
  };
}
