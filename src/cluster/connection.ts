/**
 * A node's connection to NATS, from the first attempt to the close. The client
 * reconnects by itself once it has connected; before that, and after a silent
 * connection that would not close (abandonIfStuck), this retries. On each
 * connection the node first makes sure it shares the cluster's session secret
 * (secret.ts; a node that does not stays out), then says hello, and sets up what
 * lives in JetStream (history, name claims), asking again later for what is not
 * there yet. While NATS is unreachable the relay goes on among its own instances.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { waitAtMost } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";
import { type Claims, NAMES_RETRY_MS } from "./claims.ts";
import type { Frames } from "./frames.ts";
import type { ClusterHistory } from "./history.ts";
import type { Membership } from "./membership.ts";
import { type ClusterOptions, connectionOptions, safeServers } from "./nats-options.ts";
import type { SecretAgreement } from "./secret.ts";
import type { ClusterCounters } from "./status.ts";

export interface ConnectionContext {
  options: ClusterOptions;
  prefix: string;
  secret: SecretAgreement;
  membership: Membership;
  frames: Frames;
  claims: Claims;
  history?: ClusterHistory;
  counters: ClusterCounters;
  /** Said on every (re)connection, before anything else. */
  hello(): void;
}

export interface NodeConnection {
  /** The connection while NATS is reachable, else null. */
  current(): NatsConnection | null;
  readonly connected: boolean;
  readonly connectedSince: number;
  /** Set while a (re)connection sets up KV and history: claims wait for it instead of going local. */
  readonly resuming: Promise<void> | null;
  /** `bye` is said before the connection drains. */
  close(bye: () => void): Promise<void>;
}

/** Bad credentials or TLS must show, but a NATS that is just not up yet should not flood the log. */
const UNREACHABLE_LOG_WINDOW_MS = 30_000;
/** From "no answer to pings" to the client's own close: milliseconds when the flow is alive, never when it was dropped. */
const STUCK_CLOSE_MS = 3000;

/**
 * The line for failed attempts to reach NATS: attempts the window's first line did not cover are written when
 * the window ends, and when the attempts end (connected or closing), with the last reason and the attempts so far.
 */
function unreachableLine(options: ClusterOptions, log: Logger) {
  const line = createTallyLine<{ reason: string; attempts: number }>(
    UNREACHABLE_LOG_WINDOW_MS,
    (_, { reason, attempts }) =>
      log.warn(
        "cluster_unreachable",
        `Cluster: cannot connect to NATS (${reason});` +
          ` relaying among this node's instances only, retrying (${attempts} attempts so far)`,
        { node: options.nodeName, reason, attempts },
      ),
  );
  return {
    failed: (reason: string, attempts: number) => line.add(1, { reason, attempts }),
    stop: () => line.stop(),
  };
}

type UnreachableLine = ReturnType<typeof unreachableLine>;

/** Until the first connection (the client's own reconnecting starts only after one); null once `closing()`. */
async function firstConnect(
  options: ClusterOptions,
  closing: () => boolean,
  unreachable: () => void,
  line: UnreachableLine,
): Promise<NatsConnection | null> {
  const connectOptions = connectionOptions(options);
  try {
    for (let failures = 1; !closing(); failures++) {
      try {
        return await connect(connectOptions);
      } catch (error) {
        line.failed((error as Error).message, failures);
        unreachable();
        await Bun.sleep(Math.min(1000, 250 * failures));
      }
    }
    return null;
  } finally {
    line.stop();
  }
}

function subscribe(conn: NatsConnection, ctx: ConnectionContext): void {
  const dec = new TextDecoder();
  conn.subscribe(`${ctx.prefix}.m`, {
    callback: (err, msg) => {
      if (err) return;
      try {
        ctx.membership.receive(JSON.parse(dec.decode(msg.data)));
      } catch {
        // Not ours: ignored.
      }
    },
  });
  conn.subscribe(`${ctx.prefix}.s.>`, {
    callback: (err, msg) => {
      if (!err) ctx.frames.receive(msg);
    },
  });
}

/** A StateBroadcast frame is the update plus ~100 bytes of names and headers. */
function checkMaxPayload(conn: NatsConnection, options: ClusterOptions, log: Logger): void {
  const maxPayload = conn.info?.max_payload ?? 0;
  if (options.maxMessageSize && maxPayload > 0 && maxPayload < options.maxMessageSize + 512) {
    log.warn(
      "cluster_max_payload",
      `NATS max_payload is ${maxPayload} bytes, below --max-message-size (${options.maxMessageSize}):` +
        ` larger edits stay on their node; set max_payload in the NATS configuration`,
      { node: options.nodeName, max_payload: maxPayload },
    );
  }
}

/**
 * The client's own reconnecting starts once its old socket has closed, and it closes a silent one
 * only after flushing it: a flow dropped on the way (a NAT or firewall forgetting it) with bytes
 * queued never flushes, and the node would stay away from NATS until TCP gave up, many minutes.
 * Such a connection is given up (closed: a new one is opened) unless `settled` by then.
 */
function abandonIfStuck(
  conn: NatsConnection,
  log: Logger,
  node: string,
  settled: () => boolean,
  abandoned: () => void,
): () => void {
  const timer = setTimeout(() => {
    if (settled() || conn.isClosed()) return;
    abandoned();
    log.warn(
      "cluster_connection_abandoned",
      `Cluster: the silent connection to NATS did not close within ${STUCK_CLOSE_MS / 1000} s; opening a new one`,
      { node },
    );
    void conn.close().catch(() => {});
  }, STUCK_CLOSE_MS);
  return () => clearTimeout(timer);
}

/**
 * Until JetStream answers (a supercluster still electing its leader): keep asking, quietly, while
 * `conn` is the connection in use and up (`inUse`). `wanted`: `conn` is still this node's (it may be
 * reconnecting); a secret check that ends unwanted is not a refusal.
 */
function askAgainLater(
  ctx: ConnectionContext,
  conn: NatsConnection,
  inUse: () => boolean,
  wanted: () => boolean,
  stayOut: (conn: NatsConnection) => void,
): void {
  const { secret, history, claims } = ctx;
  let asking = false;
  const retry = setInterval(() => {
    if (!inUse()) return clearInterval(retry);
    if (asking) return;
    asking = true;
    void (async () => {
      if (secret.state === "unchecked" && !(await secret.check(conn, wanted))) return stayOut(conn);
      if (history && !history.ready && inUse()) await history.connected(conn);
      const ok = claims.kv !== null || (inUse() && (await claims.open(conn, inUse, true)));
      if (!inUse() || (ok && (!history || history.ready) && secret.state !== "unchecked")) clearInterval(retry);
    })().finally(() => (asking = false));
  }, ctx.options.retryMs ?? NAMES_RETRY_MS);
}

export function openConnection(ctx: ConnectionContext, log: Logger): NodeConnection {
  const { options, secret, claims, history, counters } = ctx;
  const node = options.nodeName;
  let nc: NatsConnection | null = null;
  let connected = false;
  let connectedSince = 0;
  let closing = false;
  let resuming: Promise<void> | null = null;

  /**
   * `conn` is this node's connection, up or reconnecting. A connection given up for a new one
   * (abandonIfStuck) may still have work pending: it must not touch the state the new one set up.
   */
  const ours = (conn: NatsConnection) => conn === nc && !closing && !conn.isClosed();
  /** `conn` is the connection in use, and up. */
  const current = (conn: NatsConnection) => connected && ours(conn);
  const wanted = (conn: NatsConnection) => () => ours(conn);

  async function resume(conn: NatsConnection, first: boolean): Promise<void> {
    // The first connection was checked before anything else ran; a reconnection may find NATS wiped, or new.
    if (!first && !(await secret.check(conn, wanted(conn)))) return stayOut(conn);
    if (!current(conn)) return;
    ctx.hello();
    await history?.connected(conn);
    if (!current(conn)) return;
    const namesOk = await claims.open(conn, () => current(conn));
    if (!current(conn)) return;
    if (!namesOk || (history && !history.ready) || secret.state === "unchecked")
      askAgainLater(ctx, conn, () => current(conn), wanted(conn), stayOut);
  }

  /** This node's secret is not the cluster's: it relays among its own instances, away from NATS. */
  function stayOut(conn: NatsConnection): void {
    // A check answered for a connection since given up says nothing of the one in use.
    if (conn === nc) {
      connected = false;
      claims.kv = null;
      history?.disconnected();
    }
    void conn.close().catch(() => {});
  }

  function setConnected(conn: NatsConnection, why: string, first: boolean): void {
    connected = true;
    connectedSince = Date.now();
    log.info("cluster_connected", `Cluster: ${why} NATS (${safeServers(options.servers)}) as node ${node}`, {
      node,
      reconnected: !first,
    });
    checkMaxPayload(conn, options, log);
    const r = resume(conn, first).finally(() => {
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

  /** Follows one connection until it is closed; true when it was given up (abandonIfStuck), for a new one. */
  async function follow(conn: NatsConnection, statuses: ReturnType<NatsConnection["status"]>): Promise<boolean> {
    let stuck: (() => void) | null = null;
    let abandoned = false;
    for await (const s of statuses) {
      if (s.type === "staleConnection") {
        setDisconnected("no answer to pings");
        stuck ??= abandonIfStuck(
          conn,
          log,
          node,
          () => closing || connected,
          () => (abandoned = true),
        );
      } else if (s.type === "disconnect") {
        setDisconnected("disconnected");
        stuck?.();
        stuck = null;
      } else if (s.type === "reconnect") {
        stuck?.();
        stuck = null;
        if (!connected && !conn.isClosed()) setConnected(conn, "reconnected to", false);
      }
    }
    stuck?.();
    return abandoned;
  }

  async function run(): Promise<void> {
    for (let first = true; !closing; first = false) {
      // After a connection given up, failed attempts are written again, on a line of their own.
      if (!first) attempts = unreachableLine(options, log);
      const conn = await firstConnect(options, () => closing, secret.unreachable, attempts);
      if (!conn) return;
      nc = conn;
      // Taken before the secret is checked, so that a reconnection meanwhile is not missed.
      const statuses = conn.status();
      if (first && (closing || !(await secret.check(conn, wanted(conn))))) return stayOut(conn);
      // Closing meanwhile: close() drained the connection it knew, not this one.
      if (closing) return void conn.close().catch(() => {});
      subscribe(conn, ctx);
      setConnected(conn, first ? "connected to" : "reconnected to", first);
      // Closed for good (the node closing, or its secret refused), unless given up for a new one.
      if (!(await follow(conn, statuses))) return;
    }
  }

  log.info("cluster_starting", `Cluster: node ${node} connecting to ${safeServers(options.servers)}`, { node });
  let attempts = unreachableLine(options, log);
  const running = run();

  return {
    current: () => (connected ? nc : null),
    get connected() {
      return connected;
    },
    get connectedSince() {
      return connectedSince;
    },
    get resuming() {
      return resuming;
    },
    async close(bye) {
      closing = true;
      // Attempts still failing when the node closes are written now, not after it closed.
      attempts.stop();
      secret.abandon();
      bye();
      const conn = nc;
      if (conn) {
        await waitAtMost(conn.drain(), 1000);
        if (!conn.isClosed()) await conn.close().catch(() => {});
      }
      await waitAtMost(running, 100);
    },
  };
}
