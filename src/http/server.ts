/**
 * The HTTP side (Bun.serve), sharing the relay's in-process state:
 *   GET /         status page          GET /status   JSON
 *   GET /healthz  ok / degraded / 503 in shutdown   GET /metrics  Prometheus text
 *   GET /events   server-sent events: the page's live fragment, every second;
 *                 at most maxEventSubscribers at once, a few of them kept for the
 *                 operator (loopback, --operator), each cut when it stops
 *                 reading and ended after maxEventStreamBytes (browsers reconnect)
 *   GET /watch/KEY[/events|/view]  a session's spectator page (src/http/watch.ts), when
 *                 its key opens one; otherwise answered as any unknown path
 * GET and HEAD only; anything else is 404 (or 405 on a known path). Only the
 * host names of hosts.ts are answered (DNS rebinding).
 */
import type { Logger } from "../lib/log.ts";
import { METRICS_CONTENT_TYPE, createMetrics, type EventStreamStats, transportTotals } from "./metrics.ts";
import type { Cidr } from "../lib/cidr.ts";
import { createEventStreams, EVENT_HEADERS, SECURITY_HEADERS } from "./events.ts";
import { clientAddress } from "../transport/forwarded.ts";
import { RELAY_PATH, type WebSocketEndpoint } from "../transport/websocket.ts";
import { hostAllowed, shownHost, requestUrl } from "../lib/hosts.ts";
import { createTallyLine } from "../lib/repeats.ts";
import { SCRIPT_HASH, renderPage } from "./page.ts";
import { snapshot, type StatusContext } from "./status.ts";
import { createWatchRoutes, type SpectatorStats, type WatchOptions } from "./watch.ts";

export interface HttpOptions {
  host: string;
  port: number;
  /** How often /events pushes, in ms. */
  eventIntervalMs?: number;
  /** Instances over WebSocket on /relay. */
  websocket?: WebSocketEndpoint;
  /** Open /events streams at once; past it, 503. */
  maxEventSubscribers?: number;
  /** Open /events streams from one address (IPv6: /64), so one visitor cannot take every slot. */
  maxEventSubscribersPerAddress?: number;
  /**
   * Bytes queued for one /events stream and not yet taken by the socket; past it, the subscriber is cut as not
   * reading.
   */
  maxEventBacklogBytes?: number;
  /** Bytes one /events stream carries before it ends and the browser reconnects (EventSource does, after `retry`). */
  maxEventStreamBytes?: number;
  /** Addresses whose pages always get an /events slot, beside loopback (--operator). */
  operator?: readonly Cidr[];
  /** Proxies believed about the client's address (--trust-proxy), for /events as for /relay. */
  trustProxy?: readonly Cidr[];
  /** Names answered beside IP addresses and localhost (--allow-host). */
  allowHost?: readonly string[];
  /** Spectator pages of watched sessions (/watch/KEY); absent: every /watch/ path is unknown. */
  watch?: WatchOptions;
  /** The windows of `http_host_refused` (a minute) and `events_limited` (10 s) (tests only). */
  logWindowMs?: number;
}

export const HTTP_DEFAULTS = {
  eventIntervalMs: 1000,
  maxEventSubscribers: 32,
  maxEventSubscribersPerAddress: 8,
  maxEventBacklogBytes: 64 * 1024,
  maxEventStreamBytes: 256 * 1024,
} as const;

export type EventStats = EventStreamStats;

export interface RunningHttp {
  readonly port: number;
  readonly url: string;
  readonly events: Readonly<EventStats>;
  /** Spectators of watched sessions (absent without `watch`). */
  readonly spectators?: Readonly<SpectatorStats>;
  stop(): void;
}

const PAGE_CSP =
  `default-src 'none'; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}';` +
  ` connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

export function startHttp(options: HttpOptions, ctx: StatusContext, log: Logger): RunningHttp {
  const o = { ...HTTP_DEFAULTS, ...options };
  const streams = createEventStreams(o, ctx, log);
  const allowedHosts = new Set(options.allowHost ?? []);
  const refused = { host: 0 };
  // A rebinding page can make a visitor's browser ask again and again: one line a minute, with the count
  // (written when the minute ends, even if no request comes after); the host named is the last one refused.
  const hostLine = createTallyLine<string>(options.logWindowMs ?? 60_000, (unlogged, host) =>
    log.warn(
      "http_host_refused",
      `HTTP request for host '${host}' refused (${unlogged} since the last such line):` +
        ` allow a name with --allow-host`,
      { reason: "host", host, count: unlogged },
    ),
  );

  /** 503 in shutdown; 200 otherwise, saying "degraded" while history cannot be saved (the relay goes on relaying). */
  function health(): Response {
    const headers = { ...SECURITY_HEADERS, "Content-Type": "text/plain" };
    if (ctx.stopping()) return new Response("shutting down\n", { status: 503, headers });
    const storage = ctx.storage?.();
    if (storage?.degraded)
      return new Response(`degraded: history is not being saved (${storage.reason}); relaying goes on\n`, { headers });
    return new Response("ok\n", { headers });
  }

  // Loads prom-client now, so the first scrape does not wait for it.
  const websocket = options.websocket;
  const members = (id: string) => ctx.relay.sessions.get(id)?.instances.map((i) => i.name) ?? [];
  const watch = options.watch ? createWatchRoutes(options.watch, members, log) : null;
  const metrics = createMetrics(ctx, {
    events: () => streams.stats,
    refused: () => refused,
    transports: websocket ? () => transportTotals(ctx.relay, websocket.stats) : undefined,
    watch: watch ? () => ({ spectators: watch.stats, watcher: options.watch!.watcher.stats }) : undefined,
  });

  /** A request naming a host the relay does not answer for (hosts.ts): 421, logged at most once a minute. */
  function misdirected(host: string | null): Response {
    refused.host++;
    const name = shownHost(host);
    hostLine.add(1, name);
    return new Response(
      `this relay does not answer for '${name}'; its host can allow the name with --allow-host ${name}\n`,
      { status: 421, headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8" } },
    );
  }

  function route(path: string, ip: string): Response | Promise<Response> | null {
    switch (path) {
      case "/":
        return new Response(renderPage(snapshot(ctx)), {
          headers: {
            ...SECURITY_HEADERS,
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": PAGE_CSP,
          },
        });
      case "/status":
        return Response.json(snapshot(ctx), { headers: SECURITY_HEADERS });
      case "/healthz":
        return health();
      case "/metrics":
        return metrics
          .then((m) => m.render())
          .then(
            (body) => new Response(body, { headers: { ...SECURITY_HEADERS, "Content-Type": METRICS_CONTENT_TYPE } }),
          );
      case "/events":
        return streams.subscribe(ip);
      default:
        return null;
    }
  }

  const ws = options.websocket;
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    idleTimeout: 30,
    websocket: ws?.handler ?? { message() {} },
    fetch(req, server) {
      const path = requestUrl(req).pathname;
      // Behind --trust-proxy every request comes from the proxy: the spectator caps and the wrong-key
      // cooldown must see the audience's addresses, or one bad guess locks the whole audience out.
      const peer = () => clientAddress(server.requestIP(req)?.address ?? "", req.headers, options.trustProxy ?? []);
      if (ws && (path === RELAY_PATH || req.headers.get("upgrade")?.toLowerCase() === "websocket"))
        return ws.upgrade(req, server);
      if (path.startsWith("/watch/")) {
        // null: a key that opens nothing gets the very answer an unknown path gets, below.
        const answer = watch?.route(req, path, peer());
        if (answer) return answer;
      }
      const known = ["/", "/status", "/healthz", "/metrics", "/events"].includes(path);
      if (!known)
        return new Response("not found\n", {
          status: 404,
          headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" },
        });
      if (path !== "/healthz" && !hostAllowed(req.headers.get("host"), allowedHosts))
        return misdirected(req.headers.get("host"));
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed\n", {
          status: 405,
          headers: { ...SECURITY_HEADERS, Allow: "GET, HEAD", "Content-Type": "text/plain" },
        });
      }
      // A HEAD on /events must not take a subscriber slot it would never read from.
      if (req.method === "HEAD" && path === "/events") return new Response(null, { headers: EVENT_HEADERS });
      const res = route(path, peer())!;
      if (req.method !== "HEAD") return res;
      return Promise.resolve(res).then((r) => new Response(null, { status: r.status, headers: r.headers }));
    },
    error(error) {
      log.error("http_error", `HTTP handler failed: ${error.message}`, { reason: error.message });
      return new Response("internal error\n", { status: 500 });
    },
  });

  return {
    port: server.port!,
    url: server.url.href,
    events: streams.stats,
    spectators: watch?.stats,
    stop() {
      streams.stop();
      watch?.stop();
      hostLine.stop();
      void server.stop(true);
    },
  };
}
