/**
 * The HTTP side (Bun.serve), sharing the relay's in-process state:
 *   GET /         status page          GET /status   JSON
 *   GET /healthz  ok / 503 in shutdown GET /metrics  Prometheus text
 *   GET /events   server-sent events: the page's live fragment, every second;
 *                 at most maxEventSubscribers at once, each cut when it stops
 *                 reading and ended after maxEventStreamBytes (browsers reconnect)
 *   GET /watch/KEY[/events|/view]  a session's spectator page (src/http/watch.ts), when
 *                 its key opens one; otherwise answered as any unknown path
 * GET and HEAD only; anything else is 404 (or 405 on a known path).
 */
import type { Logger } from "../lib/log.ts";
import { METRICS_CONTENT_TYPE, createMetrics, type EventStreamStats, transportTotals } from "./metrics.ts";
import { addressGroup } from "../lib/cidr.ts";
import { RELAY_PATH, type WebSocketEndpoint } from "../transport/websocket.ts";
import { SCRIPT_HASH, renderLive, renderPage } from "./page.ts";
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
  /** Spectator pages of watched sessions (/watch/KEY); absent: every /watch/ path is unknown. */
  watch?: WatchOptions;
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

interface Subscriber {
  controller: ReadableStreamDefaultController<Uint8Array>;
  sent: number;
  group: string;
}

const SECURITY_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

const PAGE_CSP =
  `default-src 'none'; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}';` +
  ` connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

const EVENT_HEADERS = {
  ...SECURITY_HEADERS,
  "Content-Type": "text/event-stream; charset=utf-8",
  Connection: "keep-alive",
};

const encoder = new TextEncoder();

export function startHttp(options: HttpOptions, ctx: StatusContext, log: Logger): RunningHttp {
  const o = { ...HTTP_DEFAULTS, ...options };
  const subscribers = new Set<Subscriber>();
  const perGroup = new Map<string, number>();
  const events: EventStats = { subscribers: 0, refused: 0, cut: 0, rotated: 0 };
  let ticker: Timer | null = null;
  // One line per 10 s at most, with counts, whatever a flood of pages does.
  let loggedAt = -Infinity;
  let unlogged = { refused: 0, cut: 0 };

  function note(kind: "refused" | "cut"): void {
    events[kind]++;
    unlogged[kind]++;
    const now = performance.now();
    if (now - loggedAt < 10_000) return;
    loggedAt = now;
    log.warn(
      "events_limited",
      `/events: ${unlogged.cut} subscribers cut for not reading (over ${o.maxEventBacklogBytes} bytes unsent),` +
        ` ${unlogged.refused} refused past ${o.maxEventSubscribers} open (since the last such line)`,
      { reason: kind === "cut" ? "not_reading" : "subscriber_cap", cut: unlogged.cut, refused: unlogged.refused },
    );
    unlogged = { refused: 0, cut: 0 };
  }

  function drop(sub: Subscriber): void {
    if (!subscribers.delete(sub)) return;
    const n = (perGroup.get(sub.group) ?? 1) - 1;
    if (n <= 0) perGroup.delete(sub.group);
    else perGroup.set(sub.group, n);
    events.subscribers = subscribers.size;
    if (subscribers.size === 0 && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  /** Queues an event; cuts the subscriber when its stream has not taken what it was given. */
  function send(sub: Subscriber, event: Uint8Array): void {
    // With a byte-length strategy and no high-water mark, -desiredSize is what
    // is queued in the stream and not yet taken by the socket.
    if (-(sub.controller.desiredSize ?? 0) + event.byteLength > o.maxEventBacklogBytes) {
      drop(sub);
      note("cut");
      try {
        sub.controller.error(new Error("subscriber not reading"));
      } catch {}
      return;
    }
    try {
      sub.controller.enqueue(event);
    } catch {
      drop(sub);
      return;
    }
    sub.sent += event.byteLength;
    if (sub.sent >= o.maxEventStreamBytes) {
      // What a stream can hold in kernel buffers for a peer that stopped reading is bounded by this.
      drop(sub);
      events.rotated++;
      sub.controller.close();
    }
  }

  function push(): void {
    if (subscribers.size === 0) return;
    // Rendered once per tick, whatever the number of open pages.
    const event = encoder.encode(`event: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`);
    for (const sub of subscribers) send(sub, event);
  }

  function subscribe(ip: string): Response {
    const group = addressGroup(ip);
    const full =
      subscribers.size >= o.maxEventSubscribers
        ? `too many live status pages open (${o.maxEventSubscribers})`
        : (perGroup.get(group) ?? 0) >= o.maxEventSubscribersPerAddress
          ? `too many live status pages open from your address (${o.maxEventSubscribersPerAddress})`
          : null;
    if (full !== null) {
      note("refused");
      return new Response(`${full}; try again later\n`, {
        status: 503,
        headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain", "Retry-After": "10" },
      });
    }
    let self: Subscriber;
    const stream = new ReadableStream<Uint8Array>(
      {
        start(controller) {
          self = { controller, sent: 0, group };
          subscribers.add(self);
          perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
          events.subscribers = subscribers.size;
          send(
            self,
            encoder.encode(`retry: 2000\nevent: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`),
          );
          ticker ??= setInterval(push, o.eventIntervalMs);
        },
        cancel() {
          drop(self);
        },
      },
      { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    return new Response(stream, { headers: EVENT_HEADERS });
  }

  // Loads prom-client now, so the first scrape does not wait for it.
  const websocket = options.websocket;
  const members = (id: string) => ctx.relay.sessions.get(id)?.instances.map((i) => i.name) ?? [];
  const watch = options.watch ? createWatchRoutes(options.watch, members, log) : null;
  const metrics = createMetrics(ctx, {
    events: () => events,
    transports: websocket ? () => transportTotals(ctx.relay, websocket.stats) : undefined,
    watch: watch ? () => ({ spectators: watch.stats, watcher: options.watch!.watcher.stats }) : undefined,
  });

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
        return ctx.stopping()
          ? new Response("shutting down\n", {
              status: 503,
              headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" },
            })
          : new Response("ok\n", { headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" } });
      case "/metrics":
        return metrics
          .then((m) => m.render())
          .then(
            (body) => new Response(body, { headers: { ...SECURITY_HEADERS, "Content-Type": METRICS_CONTENT_TYPE } }),
          );
      case "/events":
        return subscribe(ip);
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
      const path = new URL(req.url).pathname;
      if (ws && (path === RELAY_PATH || req.headers.get("upgrade")?.toLowerCase() === "websocket"))
        return ws.upgrade(req, server);
      if (path.startsWith("/watch/")) {
        // null: a key that opens nothing gets the very answer an unknown path gets, below.
        const answer = watch?.route(req, path, server.requestIP(req)?.address ?? "");
        if (answer) return answer;
      }
      const known = ["/", "/status", "/healthz", "/metrics", "/events"].includes(path);
      if (!known)
        return new Response("not found\n", {
          status: 404,
          headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" },
        });
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed\n", {
          status: 405,
          headers: { ...SECURITY_HEADERS, Allow: "GET, HEAD", "Content-Type": "text/plain" },
        });
      }
      // A HEAD on /events must not take a subscriber slot it would never read from.
      if (req.method === "HEAD" && path === "/events") return new Response(null, { headers: EVENT_HEADERS });
      const res = route(path, server.requestIP(req)?.address ?? "")!;
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
    events,
    spectators: watch?.stats,
    stop() {
      if (ticker) clearInterval(ticker);
      watch?.stop();
      for (const sub of subscribers) {
        try {
          sub.controller.close();
        } catch {}
      }
      subscribers.clear();
      void server.stop(true);
    },
  };
}
