/**
 * The relay over a WebSocket (ws:// or wss://, through HTTP proxies and port
 * 443): each frame body is one binary message, both ways.
 */
import type { TunnelTarget } from "./target.ts";
import { UP_HIGH_WATER, type Upstream, type UpstreamEvents, type UpstreamOptions } from "./upstream.ts";

/** The WebSocket client has no drain event: what is queued is looked at this often while over the mark. */
const POLL_MS = 5;

export function openWebSocket(target: TunnelTarget, o: UpstreamOptions, events: UpstreamEvents): Upstream {
  const ws = new WebSocket(target.url, {
    tls: o.ca ? { ca: o.ca } : undefined,
    perMessageDeflate: false,
  } as Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  let opened = false;
  let ended = false;
  let poll: Timer | null = null;
  let keepalive: Timer | null = null;
  const timer = setTimeout(() => {
    if (opened || ended) return;
    ended = true;
    events.failed("timeout", `no WebSocket within ${o.connectTimeoutMs / 1000} s`);
    ws.close();
  }, o.connectTimeoutMs);

  function stopTimers(): void {
    clearTimeout(timer);
    if (poll) clearInterval(poll);
    if (keepalive) clearInterval(keepalive);
    poll = keepalive = null;
  }

  ws.addEventListener("open", () => {
    if (ended) return ws.close(1000);
    opened = true;
    clearTimeout(timer);
    keepalive = setInterval(() => ws.ping(), o.pingIntervalMs);
    events.open();
  });
  ws.addEventListener("message", (ev) => {
    // The relay sends binary only.
    if (!ended && typeof ev.data !== "string") events.frame(new Uint8Array(ev.data as ArrayBuffer));
  });
  ws.addEventListener("error", (ev) => {
    if (opened || ended) return;
    ended = true;
    stopTimers();
    const e = ev as ErrorEvent & { error?: { code?: string } };
    events.failed(e.error?.code, e.message ?? "WebSocket error");
  });
  ws.addEventListener("close", (ev) => {
    stopTimers();
    if (ended) return;
    ended = true;
    if (opened) events.closed(`the relay closed the WebSocket (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`);
    else events.failed(undefined, `closed before opening (${ev.code})`);
  });

  return {
    target,
    send(body) {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(body);
      if (ws.bufferedAmount > UP_HIGH_WATER && poll === null) {
        poll = setInterval(() => {
          if (ws.bufferedAmount > UP_HIGH_WATER / 2 && ws.readyState === WebSocket.OPEN) return;
          clearInterval(poll!);
          poll = null;
          events.writable();
        }, POLL_MS);
      }
    },
    get backlog() {
      return ws.readyState === WebSocket.OPEN ? ws.bufferedAmount : 0;
    },
    pause: () => void ws.pause(),
    resume: () => void ws.resume(),
    close() {
      ended = true;
      stopTimers();
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
    },
    terminate() {
      ended = true;
      stopTimers();
      ws.terminate();
    },
  };
}
