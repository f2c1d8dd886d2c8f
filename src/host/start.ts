/**
 * The server: the relay core (src/core/) behind the TCP edge (src/transport/tcp.ts)
 * on a plain and a TLS listener, with the timers that drive it and the shutdown.
 * Each part lives in src/transport/; this file only puts them together.
 */
import type { RelayConfig } from "./config.ts";
import { type LogEvent, type Logger, silentLogger } from "../lib/log.ts";
import type { Guard } from "../transport/guard.ts";
import type { History } from "../core/history.ts";
import type { ClusterLink, RemoteMembers } from "../core/link.ts";
import type { Relay } from "../core/index.ts";
import { createRepeats, reportRepeats } from "../lib/repeats.ts";
import { type ConnectionTable, createConnectionTable } from "../transport/connections.ts";
import { type AcceptWatch, watchAccepts } from "../transport/descriptors.ts";
import type { StorageHealth } from "../storage/history-store.ts";
import { openListeners } from "../transport/listeners.ts";
import { buildRelay } from "./setup.ts";
import { shutDown } from "./shutdown.ts";
import { createTcpEdge } from "../transport/tcp.ts";
import { readTlsPem } from "../transport/tls.ts";
import type { Watching } from "./watching.ts";

export { CLOSE_LINGER_MS } from "../transport/connections.ts";
export { KEEPALIVE_IDLE_MS } from "../transport/tcp.ts";

/** The cluster adapter as the server drives it (src/cluster/node.ts). */
export interface ServerLink extends ClusterLink {
  attach(remote: RemoteMembers): void;
  close(): Promise<void>;
  /** History kept by the cluster instead of this process. */
  readonly history?: History;
  /** The session secret the cluster agreed on: session ids are keyed with it instead of --state-dir's own. */
  readonly sessionSecret?: Uint8Array;
}

const TICK_MS = 250;
const SWEEP_MS = 10_000;

export interface RunningServer {
  readonly relay: Relay;
  readonly host: string;
  /** The plain port, or null when only TLS listens. */
  readonly port: number | null;
  readonly tlsPort: number | null;
  /** Stop accepting, flush queues (up to the shutdown timeout), close everyone; `quiet`: without logging it. */
  shutdown(why: string, options?: { quiet?: boolean }): Promise<void>;
  /**
   * Re-read the certificate and key; existing connections keep theirs. Throws (and keeps the old) when the new ones
   * are bad.
   */
  reloadTls(): void;
  readonly stopping: boolean;
  readonly history: History;
  /**
   * Shared with the WebSocket endpoint (src/transport/websocket.ts), so one guard and one connection table (its
   * memory bound, bounded closes and the shutdown's waits) cover every transport.
   */
  readonly guard: Guard;
  readonly table: ConnectionTable;
  /** Whether history reaches the disk; absent without --state-dir. */
  readonly storage?: Readonly<StorageHealth>;
  /** Descriptors and the listeners' accept queues (the HTTP port is added once it listens). */
  readonly descriptors: AcceptWatch;
  /** Spectator keys and the watcher of watched sessions (src/host/watching.ts). */
  readonly watching: Watching;
}

export type ServerConfig = Pick<
  RelayConfig,
  | "host"
  | "port"
  | "maxInstances"
  | "maxInstancesPerSession"
  | "maxInstancesPerIp"
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
  | "resumeWindowMs"
  | "resumeBufferBytes"
  | "spectatorFile"
>;

export function startServer(config: ServerConfig, log: Logger, link?: ServerLink): RunningServer {
  const { store, history, guard, relay, watching } = buildRelay(config, log, link);
  const table = createConnectionTable(relay, log, config.maxTotalPendingBytes);
  const repeats = createRepeats<LogEvent>();
  const tcp = createTcpEdge(config, { relay, guard, table, log, repeats });
  const pem = config.tlsPort !== null ? readTlsPem(config) : null;
  // With TLS on, --port 0 means "no plain listener"; without it, "any free port".
  const listeners = openListeners(config, pem, tcp.handlers, tcp.accept, log, () => store?.close());
  const descriptors = watchAccepts([listeners.port, listeners.tlsPort], log);

  function tick(): void {
    const now = Date.now();
    relay.tick(now);
    table.sweep(now);
    reportRepeats(log, repeats.due(now));
  }

  const ticker = setInterval(tick, TICK_MS);
  // A few sweeps per interval keep an edit's wait within about 1.25 intervals.
  const nudger =
    config.nudgeInterval > 0 ? setInterval(() => relay.nudge(), Math.max(5, config.nudgeInterval / 4)) : null;
  const sweeper = setInterval(() => guard.sweep(Date.now()), SWEEP_MS);
  let stopping = false;

  return {
    relay,
    host: config.host,
    port: listeners.port,
    tlsPort: listeners.tlsPort,
    async shutdown(why, options) {
      if (stopping) return;
      stopping = true;
      await shutDown(why, config.shutdownTimeoutMs, {
        relay,
        log: options?.quiet ? silentLogger : log,
        listeners,
        table,
        repeats,
        stopTimers() {
          descriptors.stop();
          watching.watcher.stop();
          clearInterval(ticker);
          clearInterval(sweeper);
          if (nudger) clearInterval(nudger);
        },
        closeStore: () => store?.close(),
        closeLink: () => link?.close(),
      });
    },
    reloadTls() {
      if (!stopping) listeners.reloadTls();
    },
    get stopping() {
      return stopping;
    },
    history,
    guard,
    table,
    storage: store?.health,
    descriptors,
    watching,
  };
}
