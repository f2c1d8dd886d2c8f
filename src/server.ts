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
import type { LogEvent, Logger } from "./log.ts";
import { createBudget, createOutbox, type Outbox, type PendingBudget } from "./net/outbox.ts";
import { createFrameReader, type FrameReader } from "./protocol/framing.ts";
import { addressGroup } from "./net/cidr.ts";
import { createGuard, type Guard, type Refusal } from "./relay/guard.ts";
import { createRepeats, reportRepeats } from "./relay/repeats.ts";
import { createHistory, type History } from "./relay/history.ts";
import { loadSessionSecret } from "./session-key.ts";
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
/**
 * A close the relay decides is over within this, whether or not the peer reads:
 * waiting for a non-reader's queue to drain held its socket, queue and address slot forever.
 */
export const CLOSE_LINGER_MS = 5_000;
const TICK_MS = 250;
/** Under pressure, a connection holding unsent data that has taken nothing for this long is cut first. */
const STALLED_MS = 1_000;
/** Under pressure longer than this, the largest holders are cut even if they read. */
const PRESSURE_GRACE_MS = 3_000;
const SWEEP_MS = 10_000;

interface SocketState {
  conn: Connection;
  reader: FrameReader;
  outbox: Outbox;
  /** When a close the relay decided becomes a terminate; 0 while open. */
  closeBy: number;
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
  /** Shared with the WebSocket endpoint (src/net/websocket.ts), so one guard and one budget cover every transport. */
  readonly guard: Guard;
  readonly budget: PendingBudget;
  /** Counts another transport's connection in memory-pressure relief and the shutdown flush; returns its release. */
  track(conn: Connection, outbox: Outbox): () => void;
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
  | "handshakeTimeoutMs"
  | "idleTimeoutMs"
  | "expectedVersion"
  | "tokens"
  | "shutdownTimeoutMs"
  | "tlsPort"
  | "tlsCert"
  | "tlsKey"
  | "allow"
  | "deny"
  | "maxConnectionsPerIp"
  | "maxFailedRegistrations"
  | "failedRegistrationCooldownMs"
  | "history"
  | "historyBytes"
  | "historyAgeMs"
  | "stateDir"
  | "stateReset"
  | "nudgeInterval"
  | "handshakeMaxBytes"
  | "maxHandshakes"
  | "maxHandshakesPerIp"
  | "maxRegistrationsPerIp"
  | "replayTimeoutMs"
>;

const REFUSAL_TEXT: Record<Refusal, string> = {
  denied: "address is in a --deny range",
  not_allowed: "address is outside every --allow range",
  per_ip_limit: "too many connections from this address",
};

function readPem(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new RelayError("E_CONFIG", `cannot read ${flag} '${path}' (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`, { cause: error });
  }
}

export function startServer(config: ServerConfig, log: Logger, link?: ServerLink): RunningServer {
  const store = !link?.history && config.history > 0 && config.stateDir ? openHistoryStore(config.stateDir, { reset: config.stateReset }) : null;
  const history = link?.history ?? createHistory({ maxEntries: config.history, maxBytes: config.historyBytes, maxAgeMs: config.historyAgeMs }, store ?? undefined);
  if (store) {
    const loaded = store.load(history);
    log.info("history_loaded", `History database ${store.path}: ${loaded} updates in ${history.sizes().size} sessions${config.stateReset ? " (reset)" : ""}`, { entries: loaded });
  }
  const guard = createGuard({
    allow: config.allow,
    deny: config.deny,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxFailedRegistrations: config.maxFailedRegistrations,
    cooldownMs: config.failedRegistrationCooldownMs,
  });
  const relay = createRelay(
    {
      expectedVersion: config.expectedVersion,
      maxInstances: config.maxInstances,
      rateLimit: config.rateLimit,
      rateLimitBytes: config.rateLimitBytes,
      maxMessageSize: config.maxMessageSize,
      tokens: config.tokens,
      sessionSecret: config.stateDir ? loadSessionSecret(config.stateDir) : undefined,
      handshakeTimeoutMs: config.handshakeTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      handshakeMaxBytes: config.handshakeMaxBytes,
      maxHandshakes: config.maxHandshakes,
      maxHandshakesPerAddress: config.maxHandshakesPerIp,
      maxRegistrationsPerAddress: config.maxRegistrationsPerIp,
      nudgeIntervalMs: config.nudgeInterval,
      replayTimeoutMs: config.replayTimeoutMs,
      history,
      link,
      onRegistrationFailed(ip) {
        if (guard.registrationFailed(ip, Date.now())) {
          log.warn("cooldown_started", `Address ${ip} used up its ${config.maxFailedRegistrations} failed registrations; every registration from ${addressGroup(ip)} refused for ${config.failedRegistrationCooldownMs / 1000} s`, {
            ip,
            reason: "failed_registrations",
          });
        }
      },
      registrationWait: (ip) => guard.registrationWait(ip, Date.now()),
    },
    log,
  );
  link?.attach(relay.remote);
  const sockets = new Set<Socket<SocketState>>();
  /** Connections of other transports (WebSocket), as { conn, outbox }. */
  const tracked = new Set<{ conn: Connection; outbox: Outbox }>();
  let onQuiet: (() => void) | null = null;
  let onAllClosed: (() => void) | null = null;

  function checkQuiet(): void {
    if (onQuiet === null) return;
    for (const s of sockets) if (s.data.outbox.pendingBytes > 0) return;
    for (const t of tracked) if (t.outbox.pendingBytes > 0) return;
    onQuiet();
  }

  // The relay-wide bound. Pressure is relieved first by cutting the connections that
  // cause it: those holding unsent data that have taken nothing for a while (a pause of
  // everyone let ten non-reading strangers stop every concert on the relay). What is left
  // is instances that read, only not as fast as others send: their senders are slowed
  // down (reading from them pauses, TCP backpressure) until the unsent data halves. If it
  // has not halved within the grace period, the connections holding the most are cut.
  let pressureEpisodes = 0;
  let pressureLoggedAt = 0;
  let pressureSince = 0;
  let relieving = false;
  const pausedForPressure = new Set<Socket<SocketState>>();
  const budget = createBudget(config.maxTotalPendingBytes, (over) => {
    if (!over) {
      pressureSince = 0;
      for (const s of pausedForPressure) if (!closing.has(s)) s.resume();
      pausedForPressure.clear();
      return;
    }
    pressureSince = Date.now();
    pressureEpisodes++;
    if (relieving) return;
    relieving = true;
    // After the frame being handled: everyone hears the current update before hearing who left.
    queueMicrotask(() => {
      relieving = false;
      relieve(Date.now());
    });
  });

  type Held = { conn: Connection; outbox: Outbox };

  function largest(accept: (h: Held) => boolean): Held | null {
    let worst: Held | null = null;
    const consider = (h: Held) => {
      if (h.conn.state !== "closed" && h.outbox.liveBytes > (worst?.outbox.liveBytes ?? 0) && accept(h)) worst = h;
    };
    for (const s of sockets) consider(s.data);
    for (const t of tracked) consider(t);
    return worst;
  }

  function cutWhileOver(accept: (h: Held) => boolean): number {
    let cut = 0;
    while (budget.used > budget.limit / 2) {
      const worst = largest(accept);
      if (worst === null) break;
      // The cut drops what had not started to go out and queues the last word.
      relay.cut(worst.conn, "memory_pressure");
      cut++;
    }
    return cut;
  }

  function relieve(now: number): void {
    if (!budget.over) return;
    const stalled = cutWhileOver((h) => now - h.outbox.lastProgress >= STALLED_MS);
    const overdue = now - pressureSince >= PRESSURE_GRACE_MS ? cutWhileOver(() => true) : 0;
    if (budget.over) {
      for (const s of sockets) {
        if (s.data.conn.state !== "registered" || pausedForPressure.has(s)) continue;
        s.pause();
        pausedForPressure.add(s);
      }
    }
    if ((stalled > 0 || overdue > 0 || pausedForPressure.size > 0) && now - pressureLoggedAt >= 10_000) {
      log.warn(
        "backpressure",
        `Unsent data for all connections passed ${config.maxTotalPendingBytes} bytes: cut ${stalled} that stopped reading and ${overdue} holding the most; reading from senders paused until it halves (${pressureEpisodes} times so far)`,
        { reason: "total_pending", episodes: pressureEpisodes, cut: stalled + overdue },
      );
      pressureLoggedAt = now;
    }
  }

  const repeats = createRepeats<LogEvent>();
  const closing = new Set<Socket<SocketState>>();

  function closeBounded(socket: Socket<SocketState>): void {
    socket.data.closeBy = Date.now() + CLOSE_LINGER_MS;
    closing.add(socket);
  }

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
        end: () => socket.end(),
      },
      { maxPendingBytes: config.maxPendingBytes, budget, onEmpty: checkQuiet },
    );
    const reader = createFrameReader(config.maxMessageSize, {
      frame: (body) => relay.receive(conn, body),
      oversized: (length) => relay.oversized(conn, length),
    });
    const conn = relay.open({
      address: socket.remoteAddress,
      port: socket.remotePort,
      get pendingBytes() {
        return outbox.pendingBytes;
      },
      get frontBytes() {
        return outbox.frontBytes;
      },
      send: (frame, front) => outbox.enqueue(frame, front),
      // Nothing more is read from a connection being closed: a stranger streaming
      // megabytes after its one Error meets TCP flow control instead of our CPU.
      close() {
        reader.stop();
        socket.pause();
        closeBounded(socket);
        outbox.endAfterFlush();
      },
      closeWith(last) {
        reader.stop();
        socket.pause();
        closeBounded(socket);
        outbox.endWith(last);
      },
      terminate() {
        reader.stop();
        outbox.clear();
        socket.terminate();
      },
      setFrameLimit: (bytes) => reader.setMaxFrameSize(bytes),
    });
    socket.data = { conn, reader, outbox, closeBy: 0 };
    sockets.add(socket);
  }

  // One set of handlers for the plain and the TLS listener: the relay cannot tell them apart.
  const handlers: SocketHandler<SocketState> = {
    open: accept,
    handshake(socket, success, authorizationError) {
      // A port scanner makes one of these per connect: one line a minute per address, with a count.
      if (!success && repeats.first("tls_handshake_failed", addressGroup(socket.remoteAddress), Date.now(), { ip: socket.remoteAddress, level: "warn" })) {
        log.warn("tls_handshake_failed", `TLS handshake with ${socket.remoteAddress} failed${authorizationError ? `: ${authorizationError.message}` : ""}`, {
          ip: socket.remoteAddress,
          reason: authorizationError?.message ?? "handshake failed",
        });
      }
    },
    data(socket, chunk) {
      relay.stats.bytesIn += chunk.length;
      const state = socket.data;
      if (!state) return;
      state.reader.push(chunk);
      if (chunk.length <= 4 && state.reader.midFrame) relay.answerLoneHeader(state.conn);
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
      closing.delete(socket);
      pausedForPressure.delete(socket);
      state.outbox.clear();
      relay.closed(state.conn, error ? "error" : "closed");
      checkQuiet();
      if (sockets.size === 0) onAllClosed?.();
    },
  };

  let tlsPem = config.tlsPort !== null ? { cert: readPem(config.tlsCert, "--tls-cert"), key: readPem(config.tlsKey, "--tls-key") } : null;

  function listenTls(port: number, pem = tlsPem!): TCPSocketListener<SocketState> {
    try {
      // SO_REUSEPORT lets a reload open the new listener before the old one closes.
      const options = { hostname: config.host, port, tls: { cert: pem.cert, key: pem.key }, socket: handlers, reusePort: true };
      return Bun.listen<SocketState>(options);
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      if (e.code?.startsWith("ERR_OSSL") || /PEM|X509|key/i.test(e.message)) {
        throw new RelayError("E_CONFIG", `invalid TLS certificate or key (--tls-cert '${config.tlsCert}', --tls-key '${config.tlsKey}'): ${e.message}`, { cause: e });
      }
      throw error;
    }
  }

  // With TLS on, --port 0 means "no plain listener"; without it, "any free port".
  const plainListener = config.port !== null ? Bun.listen<SocketState>({ hostname: config.host, port: config.port, socket: handlers }) : null;
  let tlsListener: TCPSocketListener<SocketState> | null = null;
  /** Listeners a reload replaced, each closed once drained (reloadTls). */
  const retiring = new Set<() => void>();
  try {
    tlsListener = config.tlsPort !== null ? listenTls(config.tlsPort) : null;
  } catch (error) {
    plainListener?.stop(true);
    store?.close();
    throw error;
  }
  const tlsPort = tlsListener?.port ?? null;

  function tick(): void {
    const now = Date.now();
    relay.tick(now);
    relieve(now);
    for (const s of closing) {
      if (s.data.closeBy > now) continue;
      closing.delete(s);
      log.debug("close_forced", `Connection from ${s.remoteAddress} did not take its last bytes within ${CLOSE_LINGER_MS / 1000} s; closed`, {
        ip: s.remoteAddress,
        pending_bytes: s.data.outbox.pendingBytes,
      });
      s.terminate();
    }
    reportRepeats(log, repeats.due(now));
  }

  const ticker = setInterval(tick, TICK_MS);
  // A few sweeps per interval keep an edit's wait within about 1.25 intervals.
  const nudger = config.nudgeInterval > 0 ? setInterval(() => relay.nudge(), Math.max(5, config.nudgeInterval / 4)) : null;
  const sweeper = setInterval(() => guard.sweep(Date.now()), SWEEP_MS);
  let stopping = false;

  async function shutdown(why: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    const deadlineMs = config.shutdownTimeoutMs;
    log.info("shutdown", `${why}: shutting down, ${relay.instanceCount} instances connected; flushing queued frames (up to ${config.shutdownTimeoutMs / 1000} s)`, {
      reason: why,
      instances: relay.instanceCount,
    });
    plainListener?.stop(false);
    tlsListener?.stop(false);
    for (const retire of retiring) retire();
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
    if (nudger) clearInterval(nudger);
    reportRepeats(log, repeats.drain());
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
      const pem = { cert: readPem(config.tlsCert, "--tls-cert"), key: readPem(config.tlsKey, "--tls-key") };
      // The new listener opens beside the old one (SO_REUSEPORT) before the old
      // stops, so the port is never without a listener. A bad certificate throws
      // here, with the old listener untouched; stop(false) keeps its connections.
      const next = listenTls(tlsPort!, pem);
      const old = tlsListener;
      // Logged once the old listener is gone: from then on every new connection gets the new certificate.
      const retire = () => {
        if (!retiring.delete(retire)) return;
        old.stop(false);
        log.info("tls_reloaded", `TLS certificate reloaded from ${config.tlsCert}; connected instances keep their sessions`, {});
      };
      retiring.add(retire);
      // The kernel resets what waits in a listener's accept queue when it closes,
      // and keeps handing the old listener half the new connections while both
      // are open: close it just after it has emptied its queue (the next accept
      // on it, once that batch is done), or after a second if none comes.
      const acceptThenRetire = (s: Socket<SocketState>) => {
        setImmediate(retire);
        accept(s);
      };
      old.reload({ socket: { ...handlers, open: acceptThenRetire } });
      setTimeout(retire, 1000).unref();
      tlsListener = next;
      tlsPem = pem;
    },
    get stopping() {
      return stopping;
    },
    history,
    guard,
    budget,
    track(conn, outbox) {
      const entry = { conn, outbox };
      tracked.add(entry);
      return () => {
        tracked.delete(entry);
        checkQuiet();
      };
    },
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
