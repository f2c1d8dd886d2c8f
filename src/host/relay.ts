/**
 * The composition root: one relay process put together from its configuration:
 * the cluster node (loaded only for --cluster), the server (core, TCP and TLS
 * listeners, history, watching: start.ts) and the HTTP side (status, metrics,
 * spectators, WebSocket). `sova-relay` (src/cli/serve.ts) and the in-process
 * test relay both start here, so what the tests run is what hosts run.
 */
import type { ClusterNode } from "../cluster/node.ts";
import { type RunningHttp, startHttp } from "../http/server.ts";
import { listenError, RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { createWebSocketEndpoint } from "../transport/websocket.ts";
import { type RelayConfig, VERSION } from "./config.ts";
import { type RunningServer, startServer } from "./start.ts";

export interface RunningRelay {
  readonly server: RunningServer;
  /** Null with `--http-port 0`. */
  readonly http: RunningHttp | null;
  /** Shut down (queues flushed up to the shutdown timeout), then stop the HTTP side. */
  stop(why: string): Promise<void>;
}

/** What the status page says it is; tests name themselves. */
export interface RelayIdentity {
  version: string;
}

export async function startRelay(
  config: RelayConfig,
  log: Logger,
  identity: RelayIdentity = { version: VERSION },
): Promise<RunningRelay> {
  // Loaded only for --cluster: a relay alone never loads the NATS client.
  const cluster =
    config.cluster.length > 0 ? await import("./cluster.ts").then((m) => m.clusterFromConfig(config, log)) : undefined;
  const server = listen(config, log, cluster);
  const http =
    config.httpPort !== null ? await serveHttp(config, config.httpPort, server, cluster, log, identity.version) : null;
  // Only once every listener is open: a relay that could not start says so in one line, nothing before it.
  log.info("starting", `sova-relay ${VERSION} started`, { version: VERSION });
  return {
    server,
    http,
    async stop(why) {
      await server.shutdown(why);
      http?.stop();
    },
  };
}

/** The relay's listeners, or one line saying which address could not be had. */
function listen(config: RelayConfig, log: Logger, cluster: ClusterNode | undefined): RunningServer {
  try {
    return startServer(config, log, cluster);
  } catch (error) {
    if (error instanceof RelayError) throw error;
    // Bun names the port that failed: the plain one, or the TLS one opened after it.
    const port = (error as { port?: number }).port ?? config.port ?? config.tlsPort ?? 0;
    const flag = port === config.port || config.tlsPort === null ? "--port" : "--tls-port";
    throw listenError(error, { what: "", address: config.host, port, flag });
  }
}

/** The HTTP listener (status, metrics, spectators, WebSocket); the relay is shut down, quietly, if it cannot listen. */
async function serveHttp(
  config: RelayConfig,
  port: number,
  server: RunningServer,
  cluster: ClusterNode | undefined,
  log: Logger,
  version: string,
): Promise<RunningHttp> {
  const websocket = createWebSocketEndpoint(config, server, log);
  const host = config.httpHost || config.host;
  let http: RunningHttp;
  try {
    http = startHttp(
      {
        host,
        port,
        maxEventSubscribers: config.maxEventSubscribers,
        websocket,
        operator: config.operator,
        trustProxy: config.trustProxy,
        allowHost: config.allowHost,
        watch: {
          watcher: server.watching.watcher,
          keys: server.watching.keys,
          maxSpectators: config.maxSpectators,
          maxSpectatorsPerAddress: config.maxSpectatorsPerIp,
          maxSpectatorsPerSession: config.maxSpectatorsPerSession,
        },
      },
      {
        relay: server.relay,
        version,
        startedAt: Date.now(),
        stopping: () => server.stopping,
        history: server.history,
        cluster: cluster?.status,
        storage: () => server.storage,
        descriptors: () => server.descriptors.stats,
      },
      log,
    );
    server.descriptors.watch(http.port);
  } catch (error) {
    // Nobody can have connected yet: the listeners close without the shutdown's lines around the one that says why.
    await server.shutdown("startup failed", { quiet: true });
    throw listenError(error, { what: " for HTTP", address: host, port, flag: "--http-port (0: none)" });
  }
  log.info(
    "http_listening",
    `Status page on http://${host.includes(":") ? `[${host}]` : host}:${http.port}/` +
      ` (also /status, /healthz, /metrics; instances over WebSocket on /relay)`,
    { host, port: http.port },
  );
  return http;
}
