/**
 * A relay as one node of a cluster over NATS (--cluster). Loaded only when the
 * option is given, so a relay without it never pays for the NATS client.
 *
 * Subjects (prefix `sova_relay`):
 *   <p>.m           membership: heartbeats with the node's full member list,
 *                   join/leave as they happen, hello (answer with a heartbeat), bye
 *   <p>.s.<session> StateBroadcast frames, as bytes, in a small envelope
 *                   (node, epoch, seq: src/cluster/envelope.ts)
 *
 * NATS core is at-most-once and ordered per publisher, so: every node sends a
 * heartbeat each second and a node not heard for the down timeout is declared
 * down (its members leave, its names are freed); each node start has an epoch,
 * so a restarted node's old members are dropped at once; frames carry a
 * sequence number per node and session, and a gap is counted and logged.
 * While NATS is unreachable the relay goes on among its own instances.
 */
import { hostname } from "node:os";
import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, type ConnectionOptions, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { validate as validateUuid } from "uuid";
import { RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import type { ClaimResult, ClusterLink, RemoteMember, RemoteMembers } from "../core/link.ts";
import type { Instance } from "../core/index.ts";
import type { HistoryLimits } from "../core/history.ts";
import { NAMES_BUCKET, createClaims } from "./claims.ts";
import { createSealer, openEnvelope } from "./envelope.ts";
import { createClusterHistory, type ClusterHistory } from "./history.ts";

export interface ClusterOptions {
  servers: string[];
  nodeName: string;
  /** A NATS .creds file (JWT + nkey seed). */
  creds?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** CA for a NATS server with a private certificate; also turns TLS on. */
  ca?: string;
  prefix?: string;
  heartbeatMs?: number;
  /** A node not heard for this long is declared down. */
  downAfterMs?: number;
  /** --max-message-size: frames up to about this size must fit NATS's max_payload. */
  maxMessageSize?: number;
  /** History kept in a JetStream stream for the whole cluster (--history). */
  history?: { limits: HistoryLimits; sessions: number };
}

export interface ClusterNodeStatus {
  name: string;
  members: number;
  last_heard_ms: number;
}

export interface ClusterStatus {
  node: string;
  connected: boolean;
  /** Name claims go through JetStream KV (false: unique per node only). */
  names_shared: boolean;
  nodes: ClusterNodeStatus[];
  published: number;
  received: number;
  /** Frames from other nodes that never arrived, by sending node. */
  gaps: Record<string, number>;
  /** Frames not sent to the cluster while NATS was unreachable. */
  unsent: number;
  /** Messages on the frame subjects that were not a relay's envelope: ignored. */
  foreign: number;
  nodes_down: number;
  name_conflicts: number;
  disconnects: number;
}

export interface ClusterNode extends ClusterLink {
  readonly name: string;
  /** Present with --history: the relay's history, kept by NATS. */
  readonly history?: ClusterHistory;
  attach(remote: RemoteMembers): void;
  status(): ClusterStatus;
  close(): Promise<void>;
}

interface RemoteNode {
  name: string;
  epoch: number;
  lastHeard: number;
  members: Map<string, RemoteMember>;
  /** Its last frame sequence number per session, as its latest heartbeat said. */
  sent: Record<string, number>;
}

/** [session, id, name, version, connectedAt, lastActivity] */
type MemberRow = [string, string, string, string, number, number];

interface Announcement {
  t: "hb" | "join" | "leave" | "hello" | "bye";
  n: string;
  e: number;
  m?: MemberRow[];
  /** Heartbeats: the sender's last frame sequence number per session, so a lost last frame is seen too. */
  q?: Record<string, number>;
}

export const DEFAULT_HEARTBEAT_MS = 500;
export const DEFAULT_DOWN_AFTER_MS = 2000;
const NAMES_RETRY_MS = 10_000;

/** JetStream calls wait up to 5 s by default; a node should not hold registrations that long. */
function answered<T>(p: Promise<T>, ms = 2000): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`no answer within ${ms} ms`)))]);
}

export function defaultNodeName(): string {
  return `${hostname()}-${crypto.randomUUID().slice(0, 6)}`;
}

function row(inst: Instance): MemberRow {
  return [inst.session.id, inst.idText, inst.name, inst.version, inst.connectedAt, inst.lastActivity];
}

function readFile(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new RelayError(
      "E_CONFIG",
      `cannot read ${flag} '${path}' (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`,
    );
  }
}

/** Connection options; never logged (they hold credentials). */
export function connectionOptions(o: ClusterOptions): ConnectionOptions {
  // nats://user:password@host (or nats://token@host), as other NATS tools take them: the client wants them apart.
  const userinfo: Array<{ user: string; pass: string }> = [];
  const servers = o.servers.map((s) => {
    try {
      const url = new URL(s.includes("://") ? s : `nats://${s}`);
      if (url.username)
        userinfo.push({ user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) });
      return `${url.protocol}//${url.host}`;
    } catch {
      return s;
    }
  });
  const opts: ConnectionOptions = {
    servers,
    name: `sova-relay ${o.nodeName}`,
    noEcho: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    // A paused or vanished server is noticed in about two seconds, not the default four minutes.
    pingInterval: 1000,
    maxPingOut: 2,
    timeout: 2000,
  };
  if (o.creds) opts.authenticator = credsAuthenticator(new TextEncoder().encode(readFile(o.creds, "--cluster-creds")));
  if (o.user) {
    opts.user = o.user;
    opts.pass = o.pass ?? "";
  }
  if (o.token) opts.token = o.token;
  const fromUrl = userinfo[0];
  if (fromUrl && !o.user && !o.token && !o.creds) {
    if (fromUrl.pass) {
      opts.user = fromUrl.user;
      opts.pass = fromUrl.pass;
    } else opts.token = fromUrl.user;
  }
  if (o.ca) opts.tls = { ca: readFile(o.ca, "--cluster-ca") };
  else if (servers.some((s) => s.startsWith("tls://"))) opts.tls = {};
  return opts;
}

/** Servers as the log may show them: no user:password@. */
function safeServers(servers: string[]): string {
  return servers.map((s) => s.replace(/\/\/[^@/]*@/, "//")).join(", ");
}

export function startCluster(options: ClusterOptions, log: Logger): ClusterNode {
  const p = options.prefix ?? "sova_relay";
  const node = options.nodeName;
  const epoch = Date.now();
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const downAfterMs = options.downAfterMs ?? DEFAULT_DOWN_AFTER_MS;
  const connectOptions = connectionOptions(options);
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  let remote: RemoteMembers | null = null;
  let nc: NatsConnection | null = null;
  let connected = false;
  let connectedSince = 0;
  let closing = false;
  /** Set while a (re)connection sets up KV and history: claims wait for it instead of going local. */
  let resuming: Promise<void> | null = null;
  const nodes = new Map<string, RemoteNode>();
  /** Next sequence number per session of this node's frames. */
  const seqOut = new Map<string, number>();
  /** Last sequence number seen per sending node and session. */
  const seqIn = new Map<string, { epoch: number; last: number }>();
  const gaps: Record<string, number> = {};
  let gapsLogged = 0;
  let gapsUnlogged = 0;
  const counters = { published: 0, received: 0, unsent: 0, nodesDown: 0, disconnects: 0 };
  const sealer = createSealer(node, epoch);
  /** Messages on our subjects that are not ours (another program publishing there): ignored. */
  let foreign = 0;
  let unsentLogged = 0;
  let unsentUnlogged = 0;

  /** A frame NATS refused (too big for max_payload, connection closing): counted, logged once per 10 s. */
  function unsent(why: string): void {
    counters.unsent++;
    unsentUnlogged++;
    const now = Date.now();
    if (now - unsentLogged >= 10_000) {
      log.warn("cluster_unsent", `${unsentUnlogged} frames not sent to the other nodes (${why})`, {
        node,
        missing: unsentUnlogged,
        reason: why,
      });
      unsentLogged = now;
      unsentUnlogged = 0;
    }
  }

  const claims = createClaims(
    {
      node,
      epoch,
      alive: (n, e) => (n === node ? e === epoch : nodes.get(n)?.epoch === e),
      mature: () => connected && Date.now() - connectedSince >= downAfterMs,
      untilMature: () => Math.max(50, downAfterMs - (Date.now() - connectedSince)),
    },
    log,
  );

  const history =
    options.history && options.history.limits.maxEntries > 0
      ? createClusterHistory(
          {
            prefix: p,
            limits: options.history.limits,
            sessions: options.history.sessions,
            seen: (n, session) =>
              n === node ? { epoch, last: seqOut.get(session) ?? 0 } : seqIn.get(`${n}\u0000${session}`),
          },
          log,
        )
      : undefined;

  function announce(a: Announcement): void {
    if (!connected || !nc) return;
    try {
      nc.publish(`${p}.m`, enc.encode(JSON.stringify(a)));
    } catch {
      // Closed under us: the status loop says so.
    }
  }

  function heartbeat(): void {
    if (!remote) return;
    announce({ t: "hb", n: node, e: epoch, m: remote.locals().map(row), q: Object.fromEntries(seqOut) });
  }

  function dropNode(r: RemoteNode, why: string, timedOut = false): void {
    nodes.delete(r.name);
    if (timedOut) counters.nodesDown++;
    for (const m of r.members.values()) remote?.left(m.session, m.id);
    claims.freeNode(
      r.name,
      r.epoch,
      [...r.members.values()].map((m) => [m.session, m.name] as [string, string]),
    );
    for (const key of seqIn.keys()) if (key.startsWith(`${r.name}\u0000`)) seqIn.delete(key);
    log.warn(
      "cluster_node_down",
      `Node ${r.name} ${why}: its ${r.members.size} instances are gone from their sessions`,
      {
        node: r.name,
        instances: r.members.size,
        reason: why,
      },
    );
  }

  /** Records a member row; a row no relay writes (ids are randomUUID()s) is ignored whole and counted. */
  function addMember(r: RemoteNode, row: unknown): row is MemberRow {
    if (!Array.isArray(row) || typeof row[0] !== "string" || !validateUuid(row[1]) || typeof row[2] !== "string") {
      foreign++;
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

  let nameClashLogged = false;

  function onMembership(a: Announcement): void {
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
      r = { name: a.n, epoch: a.e, lastHeard: now, members: new Map(), sent: {} };
      nodes.set(a.n, r);
      log.info("cluster_node_up", `Node ${a.n} joined the cluster`, { node: a.n });
      // It may have missed our members (or this is our view coming back after a partition).
      heartbeat();
    }
    r.lastHeard = now;
    const rows = Array.isArray(a.m) ? a.m : [];
    switch (a.t) {
      case "hb": {
        if (a.q && typeof a.q === "object") {
          // Frames go before the heartbeat that counts them: a count past what arrived is a loss.
          if (!isNew) for (const [session, last] of Object.entries(a.q)) checkSeq(a.n, a.e, session, last, false);
          r.sent = a.q;
        }
        const present = new Set<string>();
        for (const m of rows) if (addMember(r, m)) present.add(m[1]);
        for (const [id, m] of r.members) {
          if (!present.has(id)) {
            r.members.delete(id);
            remote?.left(m.session, id);
          }
        }
        break;
      }
      case "join":
        for (const m of rows) addMember(r, m);
        break;
      case "leave":
        for (const [session, id] of rows) {
          if (r.members.delete(id)) remote?.left(session, id);
        }
        break;
      case "hello":
        heartbeat();
        void claims.reclaimAll();
        break;
    }
  }

  function onFrame(msg: Msg): void {
    counters.received++;
    const session = msg.subject.slice(p.length + 3);
    const env = openEnvelope(msg.data);
    if (!env) {
      foreign++;
      return;
    }
    checkSeq(env.node, env.epoch, session, env.seq, true);
    history?.record(session, env.node, env.epoch, env.seq, env.frame);
    remote?.frame(session, env.frame);
  }

  /** `q` is a frame's sequence number (`frame`) or a heartbeat's count of frames sent. */
  function checkSeq(from: string, e: number, session: string, q: number, frame: boolean): void {
    if (!Number.isFinite(q) || !Number.isFinite(e)) return;
    const key = `${from}\u0000${session}`;
    const seen = seqIn.get(key);
    if (seen && seen.epoch === e) {
      const expected = frame ? seen.last + 1 : seen.last;
      if (q > expected) gap(from, q - expected);
      if (q > seen.last) seen.last = q;
      return;
    }
    if (seen && e < seen.epoch) return;
    // First word from this sender and session: what its last heartbeat counted is the start.
    const r = nodes.get(from);
    const base = r && r.epoch === e ? (r.sent[session] ?? 0) : null;
    if (base !== null && q > base + (frame ? 1 : 0)) gap(from, q - base - (frame ? 1 : 0));
    seqIn.set(key, { epoch: e, last: q });
  }

  function gap(from: string, missing: number): void {
    gaps[from] = (gaps[from] ?? 0) + missing;
    const now = Date.now();
    gapsUnlogged += missing;
    // Bounded logging under a storm of losses: one line per 10 s with the count.
    if (now - gapsLogged >= 10_000) {
      log.warn(
        "cluster_gap",
        `${gapsUnlogged} frames from node ${from} never arrived (NATS lost them); total lost from it: ${gaps[from]}`,
        {
          node: from,
          missing: gapsUnlogged,
        },
      );
      gapsLogged = now;
      gapsUnlogged = 0;
    }
  }

  async function resume(conn: NatsConnection): Promise<void> {
    announce({ t: "hello", n: node, e: epoch });
    heartbeat();
    await history?.connected(conn);
    claims.kv = null;
    const namesOk = await openNames(conn);
    if (!namesOk || (history && !history.ready)) {
      // JetStream may come later (a supercluster still electing its leader): keep asking, quietly.
      let asking = false;
      const retry = setInterval(() => {
        if (!connected || closing) return clearInterval(retry);
        if (asking) return;
        asking = true;
        void (async () => {
          if (history && !history.ready) await history.connected(conn);
          const ok = claims.kv !== null || (await openNames(conn, true));
          if (ok && (!history || history.ready)) clearInterval(retry);
        })().finally(() => (asking = false));
      }, NAMES_RETRY_MS);
    }
  }

  let namesWarned = false;

  /** True once names are claimed through the cluster's KV bucket. */
  async function openNames(conn: NatsConnection, quiet = false): Promise<boolean> {
    let failure: Error | null = null;
    // Nodes starting together race to create the bucket: one may fail while another creates it; open it then.
    for (let attempt = 0; attempt < 5 && claims.kv === null && connected; attempt++) {
      const kvm = new Kvm(conn);
      try {
        // Memory storage: claims are about live connections, and a restarted NATS
        // gets them back from every node's reclaim.
        const kv = await answered(kvm.create(NAMES_BUCKET, { history: 1, storage: "memory" } as never));
        // Creating can succeed without JetStream answering; asking the bucket's status cannot.
        await answered(kv.status());
        claims.kv = kv;
      } catch (error) {
        failure = error as Error;
        if (/no responders|not enabled|503/i.test(failure.message)) break;
        const kv = await answered(kvm.open(NAMES_BUCKET)).catch(() => null);
        claims.kv =
          kv &&
          (await answered(kv.status())
            .then(() => kv)
            .catch(() => null));
        if (claims.kv === null) await Bun.sleep(200);
      }
    }
    if (claims.kv === null) {
      if (!quiet || !namesWarned) {
        namesWarned = true;
        log.warn(
          "cluster_names_local",
          `JetStream KV unavailable (${failure?.message ?? "not connected"}):` +
            ` instance names are unique per node only;` +
            ` asking again every ${NAMES_RETRY_MS / 1000} s`,
          {
            reason: failure?.message ?? "not connected",
          },
        );
      }
      return false;
    }
    namesWarned = false;
    log.info(
      "cluster_names_shared",
      `Cluster: instance names are claimed across the cluster (JetStream KV ${NAMES_BUCKET})`,
      { node },
    );
    void claims.reclaimAll();
    return true;
  }

  function setConnected(conn: NatsConnection, why: string): void {
    connected = true;
    connectedSince = Date.now();
    log.info("cluster_connected", `Cluster: ${why} NATS (${safeServers(options.servers)}) as node ${node}`, {
      node,
      reconnected: why.startsWith("reconnected"),
    });
    const maxPayload = conn.info?.max_payload ?? 0;
    // A StateBroadcast frame is the update plus ~100 bytes of names and headers.
    if (options.maxMessageSize && maxPayload > 0 && maxPayload < options.maxMessageSize + 512) {
      log.warn(
        "cluster_max_payload",
        `NATS max_payload is ${maxPayload} bytes, below --max-message-size (${options.maxMessageSize}):` +
          ` larger edits stay on their node; set max_payload in the NATS configuration`,
        {
          node,
          max_payload: maxPayload,
        },
      );
    }
    const r = resume(conn).finally(() => {
      if (resuming === r) resuming = null;
    });
    resuming = r;
  }

  function setDisconnected(why: string): void {
    if (!connected) return;
    connected = false;
    counters.disconnects++;
    history?.disconnected();
    log.warn(
      "cluster_disconnected",
      `Cluster: NATS unreachable (${why}); relaying among this node's instances only until it returns`,
      { node, reason: why },
    );
  }

  /** Until the first connection: the client's own reconnecting starts only after one. */
  async function firstConnect(): Promise<NatsConnection | null> {
    let failures = 0;
    let loggedAt = 0;
    while (!closing) {
      try {
        return await connect(connectOptions);
      } catch (error) {
        failures++;
        const now = Date.now();
        // Bad credentials or TLS must show, but a NATS that is just not up yet should not flood the log.
        if (failures === 1 || now - loggedAt >= 30_000) {
          log.warn(
            "cluster_unreachable",
            `Cluster: cannot connect to NATS (${(error as Error).message});` +
              ` relaying among this node's instances only, retrying (${failures} attempts so far)`,
            {
              node,
              reason: (error as Error).message,
              attempts: failures,
            },
          );
          loggedAt = now;
        }
        await Bun.sleep(Math.min(1000, 250 * failures));
      }
    }
    return null;
  }

  async function run(): Promise<void> {
    const conn = await firstConnect();
    if (!conn) return;
    if (closing) {
      await conn.close();
      return;
    }
    nc = conn;
    conn.subscribe(`${p}.m`, {
      callback: (err, msg) => {
        if (err) return;
        try {
          onMembership(JSON.parse(dec.decode(msg.data)) as Announcement);
        } catch {
          // Not ours: ignored.
        }
      },
    });
    conn.subscribe(`${p}.s.>`, {
      callback: (err, msg) => {
        if (!err) onFrame(msg);
      },
    });
    setConnected(conn, "connected to");
    for await (const s of conn.status()) {
      if (s.type === "disconnect" || s.type === "staleConnection")
        setDisconnected(s.type === "disconnect" ? "disconnected" : "no answer to pings");
      else if (s.type === "reconnect" && !connected) setConnected(conn, "reconnected to");
    }
  }

  const hbTimer = setInterval(heartbeat, heartbeatMs);
  const downTimer = setInterval(() => {
    const now = Date.now();
    for (const r of [...nodes.values()])
      if (now - r.lastHeard > downAfterMs) dropNode(r, `not heard for ${downAfterMs / 1000} s`, true);
  }, 100);
  log.info("cluster_starting", `Cluster: node ${node} connecting to ${safeServers(options.servers)}`, { node });
  const running = run();

  return {
    name: node,
    attach(r) {
      remote = r;
    },
    history,
    async claim(session, name): Promise<ClaimResult> {
      if (resuming) await Promise.race([resuming, Bun.sleep(3000)]);
      const [result] = await Promise.all([claims.claim(session, name), history?.prepare(session)]);
      if (result === "taken") history?.cancel(session);
      return result;
    },
    release: (session, name) => claims.release(session, name),
    joined(inst) {
      announce({ t: "join", n: node, e: epoch, m: [row(inst)] });
    },
    left(inst) {
      claims.release(inst.session.id, inst.name);
      announce({ t: "leave", n: node, e: epoch, m: [[inst.session.id, inst.idText, inst.name, "", 0, 0]] });
    },
    broadcast(inst, frame) {
      const session = inst.session.id;
      const q = (seqOut.get(session) ?? 0) + 1;
      seqOut.set(session, q);
      history?.record(session, node, epoch, q, frame);
      // Sent only while connected: frames buffered across an outage would reach
      // the others late, out of place; the sequence number still moves, so they see the gap.
      if (!connected || !nc) {
        counters.unsent++;
        return;
      }
      try {
        nc.publish(`${p}.s.${session}`, sealer.seal(q, frame));
        counters.published++;
      } catch (error) {
        unsent((error as Error).message);
      }
    },
    status() {
      const now = Date.now();
      return {
        node,
        connected,
        names_shared: claims.kv !== null && connected,
        nodes: [...nodes.values()].map((r) => ({
          name: r.name,
          members: r.members.size,
          last_heard_ms: now - r.lastHeard,
        })),
        published: counters.published,
        received: counters.received,
        gaps: { ...gaps },
        unsent: counters.unsent,
        foreign,
        nodes_down: counters.nodesDown,
        name_conflicts: claims.conflicts,
        disconnects: counters.disconnects,
      };
    },
    async close() {
      closing = true;
      clearInterval(hbTimer);
      clearInterval(downTimer);
      announce({ t: "bye", n: node, e: epoch });
      const conn = nc;
      if (conn) {
        await Promise.race([conn.drain().catch(() => {}), Bun.sleep(1000)]);
        if (!conn.isClosed()) await conn.close().catch(() => {});
      }
      await Promise.race([running, Bun.sleep(100)]);
    },
  };
}
