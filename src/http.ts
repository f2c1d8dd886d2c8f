/**
 * The HTTP side (Bun.serve), sharing the relay's in-process state:
 *   GET /         status page          GET /status   JSON
 *   GET /healthz  ok / 503 in shutdown GET /metrics  Prometheus text
 *   GET /events   server-sent events: the page's live fragment, every second
 * GET and HEAD only; anything else is 404 (or 405 on a known path).
 */
import type { Server } from "bun";
import type { Logger } from "./log.ts";
import { METRICS_CONTENT_TYPE, createMetrics } from "./metrics.ts";
import { SCRIPT_HASH, renderLive, renderPage } from "./page.ts";
import { snapshot, type StatusContext } from "./status.ts";

export interface HttpOptions {
  host: string;
  port: number;
  /** How often /events pushes, in ms. */
  eventIntervalMs?: number;
}

export interface RunningHttp {
  readonly port: number;
  readonly url: string;
  stop(): void;
}

const SECURITY_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

const PAGE_CSP = `default-src 'none'; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

const encoder = new TextEncoder();

export function startHttp(options: HttpOptions, ctx: StatusContext, log: Logger): RunningHttp {
  const subscribers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  let ticker: Timer | null = null;

  function push(): void {
    if (subscribers.size === 0) return;
    // Rendered once per tick, whatever the number of open pages.
    const event = encoder.encode(`event: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`);
    for (const c of subscribers) {
      try {
        c.enqueue(event);
      } catch {
        subscribers.delete(c);
      }
    }
  }

  function subscribe(): Response {
    let self: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        self = controller;
        subscribers.add(controller);
        controller.enqueue(encoder.encode(`retry: 2000\nevent: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`));
        ticker ??= setInterval(push, options.eventIntervalMs ?? 1000);
      },
      cancel() {
        subscribers.delete(self);
        if (subscribers.size === 0 && ticker) {
          clearInterval(ticker);
          ticker = null;
        }
      },
    });
    return new Response(stream, { headers: { ...SECURITY_HEADERS, "Content-Type": "text/event-stream; charset=utf-8", Connection: "keep-alive" } });
  }

  // Loads prom-client now, so the first scrape does not wait for it.
  const metrics = createMetrics(ctx);

  function route(path: string): Response | Promise<Response> | null {
    switch (path) {
      case "/":
        return new Response(renderPage(snapshot(ctx)), {
          headers: { ...SECURITY_HEADERS, "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": PAGE_CSP },
        });
      case "/status":
        return Response.json(snapshot(ctx), { headers: SECURITY_HEADERS });
      case "/healthz":
        return ctx.stopping()
          ? new Response("shutting down\n", { status: 503, headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" } })
          : new Response("ok\n", { headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" } });
      case "/metrics":
        return metrics
          .then((m) => m.render())
          .then((body) => new Response(body, { headers: { ...SECURITY_HEADERS, "Content-Type": METRICS_CONTENT_TYPE } }));
      case "/events":
        return subscribe();
      default:
        return null;
    }
  }

  const server: Server<undefined> = Bun.serve({
    hostname: options.host,
    port: options.port,
    idleTimeout: 30,
    fetch(req) {
      const path = new URL(req.url).pathname;
      const known = ["/", "/status", "/healthz", "/metrics", "/events"].includes(path);
      if (!known) return new Response("not found\n", { status: 404, headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain" } });
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed\n", { status: 405, headers: { ...SECURITY_HEADERS, Allow: "GET, HEAD", "Content-Type": "text/plain" } });
      }
      const res = route(path)!;
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
    stop() {
      if (ticker) clearInterval(ticker);
      for (const c of subscribers) {
        try {
          c.close();
        } catch {}
      }
      subscribers.clear();
      void server.stop(true);
    },
  };
}
