/**
 * The WebSocket edge: `GET /relay` on the HTTP listener upgrades to a WebSocket
 * whose binary messages each carry one frame body (the same MessagePack as on
 * TCP, without the 4-byte length). Each upgraded socket becomes a relay `Peer`
 * as a TCP socket does in server/tcp.ts, so it meets TCP instances in the same
 * sessions, under the same guard, limits, queues and shared pending budget.
 *
 * Outbound, the relay hands a peer a byte stream (a RegistrationResponse can come
 * in two pieces), so the outbox's writes go through a frame splitter
 * (createFrameReader) and each frame leaves as one message, corked per write.
 */
import { isIP } from "node:net";
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import type { Logger } from "../lib/log.ts";
import { createFrameReader, type FrameReader } from "../protocol/framing.ts";
import type { Guard, Refusal } from "./guard.ts";
import type { Connection, Relay } from "../core/index.ts";
import type { DisconnectReason } from "../core/stats.ts";
import type { Lingering } from "./connections.ts";
import { cidrContains, type Cidr } from "../lib/cidr.ts";
import { createOutbox, type Outbox, type PendingBudget } from "../lib/outbox.ts";
import { createWsAdmission, FIRST_FRAME_MS, type WsAdmissionOptions, type WsHandshake } from "./ws-admission.ts";

export const RELAY_PATH = "/relay";
/** WebSocket pings a registered peer may send in a second (keepalives need one every few seconds). */
const MAX_PINGS_PER_SECOND = 4;

/** Close codes (RFC 6455) the endpoint uses, with the reason sent beside each. */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  tooBig: 1009,
} as const;

export type WsRefusal =
  | "wrong_path"
  | "not_websocket"
  | "shutting_down"
  | "text_message"
  | "oversized"
  | "ping_flood"
  | "handshake_limit"
  | "first_frame_timeout"
  | "origin"
  | Refusal;

export interface WebSocketOptions extends WsAdmissionOptions {
  maxMessageSize: number;
  maxPendingBytes: number;
  /** Proxies whose X-Forwarded-For / Forwarded headers are believed. */
  trustProxy: readonly Cidr[];
}

export interface WebSocketDeps {
  relay: Relay;
  guard: Guard;
  budget: PendingBudget;
  /** Counts a connection in the server's memory-pressure relief and shutdown flush; returns its release. */
  track(live: Lingering): () => void;
  /** Starts a close's time bound, as for TCP (the server's connection table ends it). */
  closeBounded(live: Lingering): void;
  /** The connection closed within its bound. */
  closedInTime(live: Lingering): void;
}

export interface WebSocketStats {
  opened: number;
  open: number;
  refused: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}

export interface WsData {
  ip: string;
  port: number;
  /** When the upgrade went through: the first frame's deadline runs from here (ws-admission.ts). */
  upgradedAt: number;
  conn?: Connection;
  outbox?: Outbox;
  splitter?: FrameReader;
  /** The last send was queued by Bun (backpressure): writes wait for drain. */
  blocked: boolean;
  done: boolean;
  /** What the server's connection table sees of this peer (memory pressure, the close's time bound). */
  lingering?: Lingering;
  /** Messages past this many bytes are oversized (smaller before registration). */
  frameLimit: number;
  /** WebSocket pings in the current second (Bun answers each with a pong we cannot count). */
  pings?: number;
  pingSecond?: number;
  untrack?: () => void;
}

type Ws = ServerWebSocket<WsData>;

export interface WebSocketEndpoint {
  /** For Bun.serve's fetch: a Response to send, or undefined once upgraded. */
  upgrade(req: Request, server: Server<WsData>): Response | undefined;
  readonly handler: WebSocketHandler<WsData>;
  readonly stats: WebSocketStats;
  /** Resolves once every WebSocket peer has closed, or after `ms`. */
  closed(ms: number): Promise<void>;
}

const REFUSAL_TEXT: Record<Refusal, string> = {
  denied: "address is in a --deny range",
  not_allowed: "address is outside every --allow range",
  per_ip_limit: "too many connections from this address",
};

const HEADERS = {
  "Content-Type": "text/plain; charset=utf-8",
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
};

function refusal(status: number, text: string, extra: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, { status, headers: { ...HEADERS, ...extra } });
}

/** RFC 7239 `for=` values, in order: `for=192.0.2.1`, `for="[2001:db8::1]:4711"`. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(",")) {
    for (const pair of element.split(";")) {
      const [k, v] = pair.split("=", 2) as [string, string | undefined];
      if (k.trim().toLowerCase() !== "for" || v === undefined) continue;
      out.push(v.trim().replace(/^"|"$/g, ""));
    }
  }
  return out;
}

/** An address from a header entry without its port or brackets; null when it is not an IP (`unknown`, `_hidden`). */
function bareAddress(entry: string): string | null {
  let a = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(":"));
  return isIP(a) === 0 ? null : a;
}

/**
 * The client's address: the direct peer's, unless that peer is a trusted proxy;
 * then the right-most address in X-Forwarded-For (or Forwarded) that is not itself
 * a trusted proxy. Entries further left were written by the client and prove nothing.
 */
export function clientAddress(direct: string, headers: Headers, trustProxy: readonly Cidr[]): string {
  const trusted = (ip: string) => trustProxy.some((c) => cidrContains(c, ip));
  if (trustProxy.length === 0 || !trusted(direct)) return direct;
  const xff = headers.get("x-forwarded-for");
  const fwd = headers.get("forwarded");
  const chain = xff !== null ? xff.split(",") : fwd !== null ? forwardedFor(fwd) : [];
  for (let i = chain.length - 1; i >= 0; i--) {
    const ip = bareAddress(chain[i]!);
    if (ip === null) return direct;
    if (!trusted(ip)) return ip;
    if (i === 0) return ip;
  }
  return direct;
}

export function createWebSocketEndpoint(
  options: WebSocketOptions,
  deps: WebSocketDeps,
  log: Logger,
): WebSocketEndpoint {
  const { relay, guard, budget } = deps;
  const admission = createWsAdmission(options);
  const peers = new Set<Ws>();
  const stats: WebSocketStats = { opened: 0, open: 0, refused: {}, bytesIn: 0, bytesOut: 0 };
  let onAllClosed: (() => void) | null = null;
  // Refusals are per connection and a script can make many: a few lines a minute, then a count.
  let refusalLines = 0;
  let refusalWindow = 0;
  let refusalsUnlogged = 0;

  function countRefusal(why: WsRefusal, ip: string, text: string): void {
    stats.refused[why] = (stats.refused[why] ?? 0) + 1;
    const now = Date.now();
    if (now - refusalWindow >= 60_000) {
      if (refusalsUnlogged > 0)
        log.warn(
          "websocket_refused",
          `${refusalsUnlogged} more WebSocket refusals in the last minute were not logged`,
          { count: refusalsUnlogged },
        );
      refusalWindow = now;
      refusalLines = 0;
      refusalsUnlogged = 0;
    }
    if (refusalLines++ < 20)
      log.warn("websocket_refused", `WebSocket from ${ip} refused: ${text}`, {
        ip,
        reason: why,
        transport: "websocket",
      });
    else refusalsUnlogged++;
  }

  function upgrade(req: Request, server: Server<WsData>): Response | undefined {
    const path = new URL(req.url).pathname;
    const direct = server.requestIP(req);
    const directIp = direct?.address ?? "unknown";
    const wantsWs = req.headers.get("upgrade")?.toLowerCase() === "websocket";
    if (path !== RELAY_PATH) {
      countRefusal(
        "wrong_path",
        directIp,
        `upgrade on ${path.slice(0, 64)}; the relay's WebSocket endpoint is ${RELAY_PATH}`,
      );
      return refusal(404, `not found: the relay's WebSocket endpoint is ${RELAY_PATH}`);
    }
    if (!wantsWs || req.method !== "GET") {
      return refusal(
        426,
        `${RELAY_PATH} takes WebSocket connections only (GET with Upgrade: websocket),` +
          ` one relay frame per binary message`,
        { Upgrade: "websocket" },
      );
    }
    if (relay.shuttingDown) {
      countRefusal("shutting_down", directIp, "relay shutting down");
      return refusal(503, "relay shutting down");
    }
    const cross = admission.originRefused(req.headers.get("origin"), req.headers.get("host"));
    if (cross !== null) {
      countRefusal("origin", directIp, `${cross}; allow its origin with --allow-origin`);
      return refusal(403, `refused: ${cross} (the relay's host can allow it with --allow-origin)`);
    }
    const ip = clientAddress(directIp, req.headers, options.trustProxy);
    const refused = guard.admit(ip, Date.now());
    if (refused !== null) {
      relay.stats.connectionsRefused++;
      stats.refused[refused] = (stats.refused[refused] ?? 0) + 1;
      if (guard.shouldLog(ip, Date.now())) {
        log.warn(
          "connection_refused",
          `Connection from ${ip} refused: ${REFUSAL_TEXT[refused]} (logged once a minute per address)`,
          { ip, reason: refused, transport: "websocket" },
        );
      }
      return refusal(refused === "per_ip_limit" ? 429 : 403, `refused: ${REFUSAL_TEXT[refused]}`);
    }
    const now = Date.now();
    if (!makeRoom(ip, now)) {
      guard.release(ip);
      countRefusal(
        "handshake_limit",
        ip,
        "every WebSocket handshake slot is taken and its address holds as many as any",
      );
      return refusal(503, "too many connections still handshaking; try again", { "Retry-After": "1" });
    }
    const port = ip === directIp ? (direct?.port ?? 0) : 0;
    const data: WsData = { ip, port, upgradedAt: now, blocked: false, done: false, frameLimit: options.maxMessageSize };
    if (server.upgrade(req, { data })) {
      admission.opened(ip, now);
      return undefined;
    }
    guard.release(ip);
    countRefusal("not_websocket", ip, "not a valid WebSocket upgrade");
    return refusal(400, "not a valid WebSocket upgrade request");
  }

  /** Closes the WebSocket handshakes past their first-frame deadline, and one more when all are taken; false: refuse. */
  function makeRoom(ip: string, now: number): boolean {
    const handshakes: WsHandshake<Ws>[] = [];
    for (const ws of peers) {
      const conn = ws.data.conn;
      if (conn?.state === "handshake") handshakes.push({ peer: ws, group: conn.group, openedAt: ws.data.upgradedAt });
    }
    const room = admission.makeRoom(handshakes, ip, now);
    for (const { peer, why } of room.close) {
      countRefusal(
        why,
        peer.data.ip,
        why === "handshake_limit"
          ? `closed: the ${admission.cap} WebSocket handshake slots are full and its address holds the most`
          : `closed: no RegisterInstance within ${FIRST_FRAME_MS / 1000} s of the upgrade`,
      );
      relay.cut(peer.data.conn!, why === "handshake_limit" ? "handshake_limit" : "handshake_timeout");
      peer.terminate();
    }
    return !room.refuse;
  }

  function open(ws: Ws): void {
    const data = ws.data;
    ws.binaryType = "uint8array";
    // Frames are split back out of the outbox's byte stream; a whole frame inside one
    // write leaves as a view of it, a frame across writes is gathered once.
    const splitter = createFrameReader(0xffffffff, {
      frame(body) {
        const status = ws.send(body);
        if (status === -1) data.blocked = true;
        // past backpressureLimit: cannot happen while writes stop at the first -1
        else if (status === 0) data.done = true;
      },
      oversized() {},
    });
    const outbox = createOutbox(
      {
        write(bytes) {
          if (data.done || ws.readyState !== 1) return -1;
          // After Bun queued a message, take nothing more until drain: the bytes wait
          // in the outbox, where the slow-consumer bound and the budget see them.
          if (data.blocked) return 0;
          ws.cork(() => splitter.push(bytes));
          stats.bytesOut += bytes.length;
          relay.stats.bytesOut += bytes.length;
          if (data.done) {
            log.warn("websocket_dropped", `WebSocket to ${data.ip} dropped a frame past its send buffer; closing`, {
              ip: data.ip,
              reason: "dropped",
            });
            ws.terminate();
            return -1;
          }
          return bytes.length;
        },
        end() {
          data.done = true;
          if (relay.shuttingDown) ws.close(CLOSE.goingAway, "relay shutting down");
          else ws.close(CLOSE.normal);
        },
      },
      { maxPendingBytes: options.maxPendingBytes, budget, onEmpty: checkClosed },
    );
    data.outbox = outbox;
    data.splitter = splitter;
    const lingering: Lingering = {
      get conn() {
        return data.conn!;
      },
      outbox,
      closeBy: 0,
      remoteAddress: data.ip,
      forceClose: () => ws.terminate(),
    };
    data.lingering = lingering;
    // Before relay.open, which may end the connection at once (and Bun may call close
    // right then): the close handler must find it to release its guard slot.
    peers.add(ws);
    stats.opened++;
    stats.open++;
    data.conn = relay.open({
      address: data.ip,
      port: data.port,
      get pendingBytes() {
        return outbox.pendingBytes;
      },
      get frontBytes() {
        return outbox.frontBytes;
      },
      send: (frame, front, own) => outbox.enqueue(frame, front, own),
      close() {
        deps.closeBounded(lingering);
        outbox.endAfterFlush();
      },
      closeWith(last) {
        deps.closeBounded(lingering);
        outbox.endWith(last);
      },
      setFrameLimit(bytes) {
        data.frameLimit = bytes;
      },
      terminate() {
        data.done = true;
        outbox.clear();
        ws.terminate();
      },
    });
    if (data.conn.state !== "closed") data.untrack = deps.track(lingering);
  }

  function message(ws: Ws, msg: string | Uint8Array): void {
    const data = ws.data;
    if (data.done || !data.conn) return;
    if (typeof msg === "string") {
      countRefusal("text_message", data.ip, "text message (the relay takes binary messages, one frame body each)");
      data.done = true;
      data.outbox?.clear();
      relay.closed(data.conn, "protocol");
      ws.close(CLOSE.unsupportedData, "binary messages only: one relay frame body each");
      return;
    }
    // Counted as frame bytes, as on TCP, so totals compare across transports.
    stats.bytesIn += msg.length + 4;
    relay.stats.bytesIn += msg.length + 4;
    // Bun's maxPayloadLength is the registered bound; before registration the relay's is smaller.
    if (msg.length > data.frameLimit) relay.oversized(data.conn, msg.length);
    else relay.receive(data.conn, msg);
  }

  function close(ws: Ws, code: number, reason: string): void {
    const data = ws.data;
    if (!peers.delete(ws)) return;
    stats.open--;
    guard.release(data.ip);
    data.done = true;
    data.outbox?.clear();
    data.splitter?.stop();
    data.untrack?.();
    if (data.lingering) deps.closedInTime(data.lingering);
    const conn = data.conn;
    checkClosed();
    if (!conn) return; // ended inside relay.open, which has counted it
    let why: DisconnectReason = code === CLOSE.normal || code === CLOSE.goingAway || code === 1005 ? "closed" : "error";
    // Bun closes a connection whose message passes maxPayloadLength itself (1009 to
    // the client) without showing us the message; this is where we learn of it.
    if (reason === "Received too big message") {
      relay.stats.drops.oversized++;
      if (conn.instance) conn.instance.dropped++;
      countRefusal(
        "oversized",
        data.ip,
        `message over --max-message-size (${options.maxMessageSize} bytes); closed with ${CLOSE.tooBig}`,
      );
      why = "protocol";
    }
    relay.closed(conn, why);
  }

  function checkClosed(): void {
    if (onAllClosed !== null && peers.size === 0) onAllClosed();
  }

  const handler: WebSocketHandler<WsData> = {
    // Larger messages are closed by Bun with 1009 before any byte is held past the bound.
    maxPayloadLength: options.maxMessageSize,
    // Only a safety net: writes stop at the first queued message, so Bun holds about one batch
    // (at most one frame of the largest size); a peer whose Bun-side queue grows past that is
    // taking what we never sent (pongs, if it got past the ping check) and is closed.
    backpressureLimit: options.maxMessageSize * 2 + 65536,
    closeOnBackpressureLimit: true,
    // Bun pings a silent client before this, so only dead peers are dropped (as TCP keepalive does).
    idleTimeout: 120,
    sendPings: true,
    perMessageDeflate: false,
    open,
    message,
    drain(ws) {
      ws.data.blocked = false;
      ws.data.outbox?.flush();
    },
    close,
    // Bun answers every ping with a pong that it queues itself, outside the outbox and its
    // bounds: 128 strangers pinging without reading held 1.4 GB. Pings are for keeping a
    // quiet registered connection alive (the tunnel sends one every 30 s): before
    // registration, or more than a few a second, the connection is closed.
    ping(ws) {
      const data = ws.data;
      const second = Math.floor(Date.now() / 1000);
      if (data.pingSecond !== second) {
        data.pingSecond = second;
        data.pings = 0;
      }
      data.pings = (data.pings ?? 0) + 1;
      if (data.conn?.state === "registered" && data.pings <= MAX_PINGS_PER_SECOND) return;
      countRefusal("ping_flood", data.ip, "WebSocket pings before registration or past a few a second");
      if (data.conn) relay.cut(data.conn, "protocol");
      ws.terminate();
    },
  };

  return {
    upgrade,
    handler,
    stats,
    closed(ms) {
      return new Promise((resolve) => {
        if (peers.size === 0) return resolve();
        const timer = setTimeout(() => {
          for (const ws of peers) ws.terminate();
          resolve();
        }, ms);
        onAllClosed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
