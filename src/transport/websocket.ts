/**
 * The WebSocket edge: `GET /relay` on the HTTP listener upgrades to a WebSocket
 * whose binary messages each carry one frame body (the same MessagePack as on
 * TCP, without the 4-byte length). Each upgraded socket becomes a `Link`
 * (src/transport/edge.ts) as a TCP socket does, so it meets TCP instances in the
 * same sessions, under the same guard, limits, queues, memory bound and shutdown.
 * What is WebSocket's own stays here: admission before the upgrade, close codes,
 * text messages, pings.
 *
 * Outbound, the relay hands a peer a byte stream (a RegistrationResponse comes in
 * two pieces, and the outbox merges small frames into shared chunks), so the
 * carrier's writes go through a frame splitter (createFrameReader) and each frame
 * leaves as one message, corked per write.
 */
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import { requestUrl } from "../lib/hosts.ts";
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";
import { createFrameReader } from "../protocol/framing.ts";
import type { Guard, Refusal } from "./guard.ts";
import type { Connection, Relay } from "../core/index.ts";
import type { DisconnectReason } from "../core/stats.ts";
import type { ConnectionTable } from "./connections.ts";
import type { Cidr } from "../lib/cidr.ts";
import { type Carrier, type EdgeContext, Link, refused as countRefused } from "./edge.ts";
import { clientAddress } from "./forwarded.ts";
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
  /** The server's connections of every transport (memory bound, bounded close, shutdown). */
  table: ConnectionTable;
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
  link?: Link;
  /** The relay's record of the connection, once open. */
  conn?: Connection;
  /** The last send was queued by Bun (backpressure): writes wait for drain. */
  blocked: boolean;
  /** Nothing more is sent or read. */
  done: boolean;
  /** WebSocket pings in the current second (Bun answers each with a pong we cannot count). */
  pings?: number;
  pingSecond?: number;
}

type Ws = ServerWebSocket<WsData>;

export interface WebSocketEndpoint {
  /** For Bun.serve's fetch: a Response to send, or undefined once upgraded. */
  upgrade(req: Request, server: Server<WsData>): Response | undefined;
  readonly handler: WebSocketHandler<WsData>;
  readonly stats: WebSocketStats;
}

const HEADERS = {
  "Content-Type": "text/plain; charset=utf-8",
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
};

function refusal(status: number, text: string, extra: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, { status, headers: { ...HEADERS, ...extra } });
}

/** How a WebSocket writes (one message per frame), ends (with a close code) and pauses. */
function wsCarrier(ws: Ws, relay: Relay, log: Logger): Carrier {
  const data = ws.data;
  // A whole frame inside one write leaves as a view of it, a frame across writes is gathered once.
  const splitter = createFrameReader(0xffffffff, {
    frame(body) {
      const status = ws.send(body);
      if (status === -1) data.blocked = true;
      // past backpressureLimit: cannot happen while writes stop at the first -1
      else if (status === 0) data.done = true;
    },
    oversized() {},
  });
  return {
    write(bytes) {
      if (data.done || ws.readyState !== 1) return -1;
      // After Bun queued a message, take nothing more until drain: the bytes wait
      // in the outbox, where the slow-consumer bound and the budget see them.
      if (data.blocked) return 0;
      ws.cork(() => splitter.push(bytes));
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
    terminate() {
      data.done = true;
      ws.terminate();
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}

interface PeerContext {
  edge: EdgeContext;
  /** Upgraded sockets not closed yet (the upgrade counts those still handshaking). */
  peers: Set<Ws>;
  options: WebSocketOptions;
  countRefusal(why: WsRefusal, ip: string, text: string): void;
}

/** What happens to an upgraded socket: it opens as a `Link`, its messages are frames, its close ends the link. */
function peerHandlers(ctx: PeerContext): Pick<WebSocketHandler<WsData>, "open" | "message" | "close"> {
  const { edge, peers, countRefusal } = ctx;
  return {
    open(ws) {
      ws.binaryType = "uint8array";
      const link = new Link(edge, wsCarrier(ws, edge.relay, edge.log), ws.data.ip, ws.data.port);
      ws.data.link = link;
      // Before the link opens, which may end the connection at once (and Bun may call close
      // right then): the close handler must find it to release its guard slot.
      peers.add(ws);
      ws.data.conn = link.open();
    },
    message(ws, msg) {
      const data = ws.data;
      if (data.done || !data.link) return;
      if (typeof msg !== "string") return data.link.message(msg);
      countRefusal("text_message", data.ip, "text message (the relay takes binary messages, one frame body each)");
      data.done = true;
      data.link.abandon("protocol");
      ws.close(CLOSE.unsupportedData, "binary messages only: one relay frame body each");
    },
    close(ws, code, reason) {
      const { link, ip } = ws.data;
      if (!peers.delete(ws) || !link) return;
      ws.data.done = true;
      let why: DisconnectReason =
        code === CLOSE.normal || code === CLOSE.goingAway || code === 1005 ? "closed" : "error";
      // Bun closes a connection whose message passes maxPayloadLength itself (1009 to
      // the client) without showing us the message; this is where we learn of it.
      if (reason === "Received too big message") {
        link.droppedOversized();
        const max = ctx.options.maxMessageSize;
        countRefusal("oversized", ip, `message over --max-message-size (${max} bytes); closed with ${CLOSE.tooBig}`);
        why = "protocol";
      }
      link.gone(why);
    },
  };
}

/**
 * Counts a refusal in `stats` and logs it. Refusals are per connection and a script can make many: a few lines a
 * minute, then a count.
 */
function _refusalCounter(stats: WebSocketStats, log: Logger): (why: WsRefusal, ip: string, text: string) => void {
  let refusalLines = 0;
  let refusalWindow = Number.NEGATIVE_INFINITY;
  // Past 20 lines a minute, refusals are counted; the count is written when its minute ends, more or none coming.
  const unlogged = createTallyLine(60_000, (count) =>
    log.warn("websocket_refused", `${count} more WebSocket refusals in the last minute were not logged`, { count }),
  );
  return (why: WsRefusal, ip: string, text: string): void => {
    stats.refused[why] = (stats.refused[why] ?? 0) + 1;
    const now = performance.now();
    if (now - refusalWindow >= 60_000) {
      refusalWindow = now;
      refusalLines = 0;
    }
    if (refusalLines++ < 20)
      log.warn("websocket_refused", `WebSocket from ${ip} refused: ${text}`, {
        ip,
        reason: why,
        transport: "websocket",
      });
    else unlogged.add(1);
  };
}

export function createWebSocketEndpoint(
  options: WebSocketOptions,
  deps: WebSocketDeps,
  log: Logger,
): WebSocketEndpoint {
  const { relay, guard, table } = deps;
  const admission = createWsAdmission(options);
  const peers = new Set<Ws>();
  const stats: WebSocketStats = { opened: 0, open: 0, refused: {}, bytesIn: 0, bytesOut: 0 };
  const edge = { relay, guard, table, log, maxPendingBytes: options.maxPendingBytes, counts: stats };
  const countRefusal = _refusalCounter(stats, log);

  function upgrade(req: Request, server: Server<WsData>): Response | undefined {
    const path = requestUrl(req).pathname;
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
      stats.refused[refused] = (stats.refused[refused] ?? 0) + 1;
      const text = countRefused(edge, ip, refused, "websocket");
      return refusal(refused === "per_ip_limit" ? 429 : 403, `refused: ${text}`);
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
    if (server.upgrade(req, { data: { ip, port, upgradedAt: now, blocked: false, done: false } })) {
      admission.opened(ip, now);
      return undefined;
    }
    guard.release(ip);
    countRefusal("not_websocket", ip, "not a valid WebSocket upgrade");
    return refusal(400, "not a valid WebSocket upgrade request");
  }

  /**
   * Bun holds a WebSocket message until it is whole, up to --max-message-size for every connection (one limit per
   * listener), so fewer WebSocket handshakes run at once than TCP ones (ws-admission.ts). Closes those past their
   * first-frame deadline, and one more when all are taken; false: the newcomer is refused instead.
   */
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

  const { open, message, close } = peerHandlers({ edge, peers, options, countRefusal });

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
      ws.data.link?.drained();
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

  return { upgrade, handler, stats };
}
