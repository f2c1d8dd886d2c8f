/**
 * The edge between Bun's sockets and the relay: each accepted socket gets a
 * frame reader (bytes in), an outbox (bytes out, with partial writes and
 * drain) and a relay connection. A plain and a TLS listener share the same
 * handlers, so plain and TLS instances meet in the same sessions. Nothing here
 * decides anything about the protocol.
 */
import { readFileSync } from "node:fs";
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { RelayConfig } from "./config.ts";
import { RelayError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { createBudget, createOutbox, type Outbox } from "./net/outbox.ts";
import { createFrameReader, type FrameReader } from "./protocol/framing.ts";
import { createGuard, type Refusal } from "./relay/guard.ts";
import { createHistory, type History } from "./relay/history.ts";
import { openHistoryStore } from "./store.ts";
import { createRelay, type Connection, type Relay } from "./relay/relay.ts";
import type { ClusterLink, RemoteMembers } from "./relay/link.ts";

/** The cluster adapter as the server drives it (src/cluster/node.ts). */
export interface ServerLink extends ClusterLink {
  attach(remote: RemoteMembers): void;
  close(): Promise<void>;
  /** History kept by the cluster instead of this process. */
  readonly history?: History;
}

/** Half-open peers (laptop lid shut, cable pulled) are found by TCP keepalive after this. */
export const KEEPALIVE_IDLE_MS = 30_000;
/** After we end a connection, a peer that never closes its side is cut after this. */
const LINGER_SECONDS = 5;
const TICK_MS = 250;
const SWEEP_MS = 10_000;

interface SocketState {
  conn: Connection;
  reader: FrameReader;
  outbox: Outbox;
}

export interface RunningServer {
  readonly relay: Relay;
  readonly host: string;
  /** The plain port, or null when only TLS listens. */
  readonly port: number | null;
  readonly tlsPort: number | null;
  /** Stop accepting, flush queues (up to the shutdown timeout), close everyone. */
  shutdown(why: string): Promise<void>;
  /** Re-read the certificate and key; existing connections keep theirs. Throws (and keeps the old) when the new ones are bad. */
  reloadTls(): void;
  readonly stopping: boolean;
  readonly history: History;
}

export type ServerConfig = Pick<
  RelayConfig,
  | "host"
  | "port"
  | "maxInstances"
  | "rateLimit"
  | "rateLimitBytes"
  | "maxMessageSize"
  | "maxPendingBytes"
  | "maxTotalPendingBytes"
  | "handshakeTimeout"
  | "idleTimeout"
  | "expectedVersion"
  | "tokens"
  | "shutdownTimeout"
  | "tlsPort"
  | "tlsCert"
  | "tlsKey"
  | "allow"
  | "deny"
  | "maxConnectionsPerIp"
  | "maxFailedRegistrations"
  | "failedRegistrationCooldown"
  | "history"
  | "historyBytes"
  | "historyAge"
  | "stateDir"
  | "stateReset"
>;

const REFUSAL_TEXT: Record<Refusal, string> = {
  denied: "address is in a --deny range",
  not_allowed: "address is outside every --allow range",
  per_ip_limit: "too many connections from this address",
  cooldown: "too many failed registrations from this address; cooling down",
};

function readPem(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new RelayError("E_CONFIG", `cannot read ${flag} '${path}' (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
  }
}

export function startServer(config: ServerConfig, log: Logger, link?: ServerLink): RunningServer {
  const store = !link?.history && config.history > 0 && config.stateDir ? openHistoryStore(config.stateDir, { reset: config.stateReset }) : null;
  const history = link?.history ?? createHistory({ maxEntries: config.history, maxBytes: config.historyBytes, maxAgeMs: config.historyAge * 1000 }, store ?? undefined);
  if (store) {
    const loaded = store.load(history);
    log.info("history_loaded", `History database ${store.path}: ${loaded} updates in ${history.sizes().size} sessions${config.stateReset ? " (reset)" : ""}`, { entries: loaded });
  }
  const guard = createGuard({
    allow: config.allow,
    deny: config.deny,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxFailedRegistrations: config.maxFailedRegistrations,
    cooldownMs: config.failedRegistrationCooldown * 1000,
  });
  const relay = createRelay(
    {
      expectedVersion: config.expectedVersion,
      maxInstances: config.maxInstances,
      rateLimit: config.rateLimit,
      rateLimitBytes: config.rateLimitBytes,
      maxMessageSize: config.maxMessageSize,
      tokens: config.tokens,
      handshakeTimeoutMs: config.handshakeTimeout * 1000,
      idleTimeoutMs: config.idleTimeout * 1000,
      history,
      link,
      onRegistrationFailed(ip) {
        if (guard.registrationFailed(ip, Date.now())) {
          log.warn("cooldown_started", `Address ${ip} failed to register more than ${config.maxFailedRegistrations} times in a minute; refused for ${config.failedRegistrationCooldown} s`, {
            ip,
            reason: "failed_registrations",
          });
        }
      },
    },
    log,
  );
  link?.attach(relay.remote);
  const sockets = new Set<Socket<SocketState>>();
  let onQuiet: (() => void) | null = null;
  let onAllClosed: (() => void) | null = null;

  function checkQuiet(): void {
    if (onQuiet === null) return;
    for (const s of sockets) if (s.data.outbox.pendingBytes > 0) return;
    onQuiet();
  }

  // Under sustained overload this flips many times a second: log one line per 10 s, with a count.
  let pressureEpisodes = 0;
  let pressureLoggedAt = 0;
  const budget = createBudget(config.maxTotalPendingBytes, (over) => {
    if (over) {
      pressureEpisodes++;
      const now = Date.now();
      if (now - pressureLoggedAt >= 10_000) {
        log.warn("backpressure", `Unsent data for all instances passed ${config.maxTotalPendingBytes} bytes: reading paused until it halves (${pressureEpisodes} times so far)`, {
          reason: "total_pending",
          episodes: pressureEpisodes,
        });
        pressureLoggedAt = now;
      }
    }
    for (const s of sockets) {
      if (over) s.pause();
      else s.resume();
    }
  });

  function refuse(socket: Socket<SocketState>, refusal: Refusal): void {
    const ip = socket.remoteAddress;
    relay.stats.connectionsRefused++;
    if (guard.shouldLog(ip, Date.now())) {
      log.warn("connection_refused", `Connection from ${ip} refused: ${REFUSAL_TEXT[refusal]} (logged once a minute per address)`, { ip, reason: refusal });
    }
    socket.terminate();
  }

  function accept(socket: Socket<SocketState>): void {
    const refusal = guard.admit(socket.remoteAddress, Date.now());
    if (refusal !== null) return refuse(socket, refusal);
    // Bun gives accepted sockets a 120 s timeout that traffic does not reset, and
    // closes the socket when it fires: every instance would be dropped two minutes
    // into a concert (found by the soak run). Silence is handled by our own timers.
    socket.timeout(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    const outbox = createOutbox(
      {
        write: (bytes) => {
          const n = socket.write(bytes);
          if (n > 0) relay.stats.bytesOut += n;
          return n;
        },
        end: () => {
          socket.end();
          socket.timeout(LINGER_SECONDS);
        },
      },
      { maxPendingBytes: config.maxPendingBytes, budget, onEmpty: checkQuiet },
    );
    const state = { outbox } as SocketState;
    const conn = relay.open({
      address: socket.remoteAddress,
      port: socket.remotePort,
      get pendingBytes() {
        return outbox.pendingBytes;
      },
      send: (frame, replay) => outbox.enqueue(frame, replay),
      close() {
        state.reader.stop();
        outbox.endAfterFlush();
      },
      terminate() {
        state.reader.stop();
        outbox.clear();
        socket.terminate();
      },
    });
    state.conn = conn;
    state.reader = createFrameReader(config.maxMessageSize, {
      frame: (body) => relay.receive(conn, body),
      oversized: (length) => relay.oversized(conn, length),
    });
    socket.data = state;
    sockets.add(socket);
    if (budget.over) socket.pause();
  }

  // One set of handlers for the plain and the TLS listener: the relay cannot tell them apart.
  const handlers: SocketHandler<SocketState> = {
    open: accept,
    handshake(socket, success, authorizationError) {
      if (!success) {
        log.warn("tls_handshake_failed", `TLS handshake with ${socket.remoteAddress} failed${authorizationError ? `: ${authorizationError.message}` : ""}`, {
          ip: socket.remoteAddress,
          reason: authorizationError?.message ?? "handshake failed",
        });
      }
    },
    data(socket, chunk) {
      relay.stats.bytesIn += chunk.length;
      socket.data?.reader?.push(chunk);
    },
    drain(socket) {
      socket.data?.outbox?.flush();
    },
    error(socket, error) {
      log.debug("socket_error", `Socket error from ${socket.remoteAddress}: ${error.message}`, { ip: socket.remoteAddress, reason: error.message });
      if (socket.data?.conn) relay.closed(socket.data.conn, "error");
    },
    timeout(socket) {
      socket.terminate();
    },
    close(socket, error) {
      const state = socket.data;
      if (!state?.conn) return; // refused before it was accepted
      if (sockets.delete(socket)) guard.release(socket.remoteAddress);
      state.outbox.clear();
      relay.closed(state.conn, error ? "error" : "closed");
      checkQuiet();
      if (sockets.size === 0) onAllClosed?.();
    },
  };

  let tlsPem = config.tlsPort !== null ? { cert: readPem(config.tlsCert, "--tls-cert"), key: readPem(config.tlsKey, "--tls-key") } : null;

  function listenTls(port: number): TCPSocketListener<SocketState> {
    try {
      return Bun.listen<SocketState>({ hostname: config.host, port, tls: { cert: tlsPem!.cert, key: tlsPem!.key }, socket: handlers });
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      if (e.code?.startsWith("ERR_OSSL") || /PEM|X509|key/i.test(e.message)) {
        throw new RelayError("E_CONFIG", `invalid TLS certificate or key (--tls-cert '${config.tlsCert}', --tls-key '${config.tlsKey}'): ${e.message}`);
      }
      throw error;
    }
  }

  // With TLS on, --port 0 means "no plain listener"; without it, "any free port".
  const plainListener = config.port !== 0 || config.tlsPort === null ? Bun.listen<SocketState>({ hostname: config.host, port: config.port, socket: handlers }) : null;
  let tlsListener: TCPSocketListener<SocketState> | null = null;
  try {
    tlsListener = config.tlsPort !== null ? listenTls(config.tlsPort) : null;
  } catch (error) {
    plainListener?.stop(true);
    store?.close();
    throw error;
  }
  const tlsPort = tlsListener?.port ?? null;

  const ticker = setInterval(() => relay.tick(), TICK_MS);
  const sweeper = setInterval(() => guard.sweep(Date.now()), SWEEP_MS);
  let stopping = false;

  async function shutdown(why: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    const deadlineMs = config.shutdownTimeout * 1000;
    log.info("shutdown", `${why}: shutting down, ${relay.instanceCount} instances connected; flushing queued frames (up to ${config.shutdownTimeout} s)`, {
      reason: why,
      instances: relay.instanceCount,
    });
    plainListener?.stop(false);
    tlsListener?.stop(false);
    relay.beginShutdown();
    const flushed = await within(deadlineMs, (done) => {
      onQuiet = done;
      checkQuiet();
    });
    onQuiet = null;
    relay.closeAll();
    const closed = await within(1000, (done) => {
      onAllClosed = done;
      if (sockets.size === 0) done();
    });
    for (const s of sockets) s.terminate();
    await link?.close();
    clearInterval(ticker);
    clearInterval(sweeper);
    plainListener?.stop(true);
    tlsListener?.stop(true);
    store?.close();
    log.info("shutdown_complete", `Shutdown complete${flushed ? "" : " (flush deadline passed; some queued frames were not sent)"}${closed ? "" : " (some peers did not close in time)"}`, {
      flushed,
    });
  }

  return {
    relay,
    host: config.host,
    port: plainListener?.port ?? null,
    tlsPort,
    shutdown,
    reloadTls() {
      if (tlsListener === null || stopping) return;
      const previous = tlsPem;
      tlsPem = { cert: readPem(config.tlsCert, "--tls-cert"), key: readPem(config.tlsKey, "--tls-key") };
      // A new listener on the same port takes new connections; stopping the old
      // one without closing its connections keeps every instance connected.
      tlsListener.stop(false);
      try {
        tlsListener = listenTls(tlsPort!);
      } catch (error) {
        tlsPem = previous;
        tlsListener = listenTls(tlsPort!);
        throw error;
      }
      log.info("tls_reloaded", `TLS certificate reloaded from ${config.tlsCert}; connected instances keep their sessions`, {});
    },
    get stopping() {
      return stopping;
    },
    history,
  };
}

/** Resolves true when `start` calls done, false when `ms` pass first. */
function within(ms: number, start: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    start(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
