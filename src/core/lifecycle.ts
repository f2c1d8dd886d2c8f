/**
 * A connection's life as the transport drives it: opened, each frame dispatched
 * by state (handshake, registered), oversized frames, the socket gone, cuts for
 * the transport's reasons, and the timed parts (deadlines, nudges).
 */
import { addressGroup } from "../lib/cidr.ts";
import { decodeMessage, encodeFrame, type Message } from "../protocol/messages.ts";
import { cut, cutSlowConsumer, deliver, enterHandshake, finish } from "./connection.ts";
import { admitHandshake, pruneRegistrationWindows, withinRate } from "./limits.ts";
import { handshake, reject } from "./registration.ts";
import { reportRepeats } from "../lib/repeats.ts";
import { invalid, relayUpdate } from "./routing.ts";
import { countDrop, errorFrame, logRepeated, type RelayState, reasonOf, who } from "./state.ts";
import { bump, type DisconnectReason } from "./stats.ts";
import type { Connection, Peer } from "./types.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

export function open(s: RelayState, peer: Peer): Connection {
  const now = s.clock.now();
  const conn: Connection = {
    id: s.nextConnId++,
    peer,
    openedAt: now,
    group: addressGroup(peer.address),
    lastSeen: now,
    lastSent: now,
    replayDeadline: 0,
    state: "handshake",
    instance: null,
  };
  s.connections.add(conn);
  enterHandshake(s, conn);
  s.stats.connectionsOpened++;
  peer.setFrameLimit(s.o.handshakeMaxBytes);
  if (!admitHandshake(s, conn)) return conn;
  logRepeated(s, "debug", "connection_accepted", conn, `New connection from ${peer.address}:${peer.port}`, {
    ip: peer.address,
  });
  return conn;
}

export function receive(s: RelayState, conn: Connection, body: Uint8Array): void {
  if (conn.state === "closed") return;
  const arrived = s.clock.monotonic();
  const now = s.clock.now();
  conn.lastSeen = now;
  if (s.shuttingDown) {
    s.stats.drops.shutdown++;
    return;
  }
  if (conn.state === "handshake") {
    const claiming = handshake(s, conn, body, now);
    if (claiming) void claiming.then(() => _replayHeld(s, conn));
    return;
  }
  if (conn.state === "registering") return _hold(s, conn, body);
  const inst = conn.instance!;
  if (!withinRate(s, inst, now, body.length)) return;
  inst.messagesIn++;
  inst.lastActivity = now;
  if (body.length === 0) return invalid(s, inst, "empty frame");
  let msg: Message;
  try {
    msg = decodeMessage(body);
  } catch (error) {
    return invalid(s, inst, reasonOf(error));
  }
  bump(s.stats.messagesReceived, msg.type);
  switch (msg.type) {
    case "StateUpdate":
      return relayUpdate(s, inst, msg, now, arrived);
    case "Ping":
      deliver(s, conn, encodeFrame({ type: "Pong", timestamp: msg.timestamp }));
      return;
    case "Pong":
      return;
    default:
      return invalid(s, inst, `unexpected ${msg.type} from an instance`);
  }
}

/** Frames an instance sends before its response are kept for after it, within a small bound. */
const MAX_HELD = 64;
const _overHeld = new WeakSet<Connection>();

function _hold(s: RelayState, conn: Connection, body: Uint8Array): void {
  conn.held ??= [];
  const held = conn.held;
  let bytes = body.length;
  for (const b of held) bytes += b.length;
  if (held.length < MAX_HELD && bytes <= s.options.maxMessageSize) {
    // A copy: the body may be a view of the socket's chunk, reused once this returns.
    held.push(body.slice());
    return;
  }
  s.stats.drops.invalid++;
  // Once per connection: a peer that keeps sending cannot flood the log.
  if (!_overHeld.has(conn)) {
    _overHeld.add(conn);
    s.log.warn(
      "invalid_message",
      `Connection from ${conn.peer.address} sent more than ${MAX_HELD} frames or ${s.options.maxMessageSize} bytes` +
        ` before its registration was answered; dropped`,
      { ip: conn.peer.address, reason: "before_registered" },
    );
  }
}

/** Once the cluster has answered: the frames read meanwhile, in order, if the registration went through. */
function _replayHeld(s: RelayState, conn: Connection): void {
  const held = conn.held;
  conn.held = undefined;
  if (held && conn.state === "registered") for (const body of held) receive(s, conn, body);
}

export function oversized(s: RelayState, conn: Connection, length: number): void {
  if (conn.state === "closed") return;
  const now = s.clock.now();
  conn.lastSeen = now;
  countDrop(s, "oversized", conn.instance);
  if (conn.state === "handshake") {
    return reject(s, conn, WIRE_ERRORS.tooLarge(length, s.o.handshakeMaxBytes), "oversized", "protocol");
  }
  const inst = conn.instance!;
  // The skipped bytes crossed the network all the same: they count toward the limits.
  if (!withinRate(s, inst, now, length)) return;
  const max = s.options.maxMessageSize;
  logRepeated(
    s,
    "warn",
    "oversized_frame",
    conn,
    `Instance '${inst.name}' sent a ${length}-byte frame (max ${max}); skipped`,
    {
      ...who(conn),
      length,
      reason: "oversized",
    },
  );
  deliver(s, conn, errorFrame(WIRE_ERRORS.tooLarge(length, max)));
}

/** The socket is gone. */
export function closed(s: RelayState, conn: Connection, reason: DisconnectReason): void {
  if (conn.state !== "closed") finish(s, conn, reason);
}

/** Ends a connection for the transport's reasons: the slow ones lose what they had queued. */
export function cutFor(s: RelayState, conn: Connection, reason: DisconnectReason): void {
  if (reason === "slow_consumer" || reason === "memory_pressure" || reason === "replay_timeout")
    cutSlowConsumer(s, conn, reason);
  else cut(s, conn, reason, true);
}

export function tick(s: RelayState, now: number): void {
  const { o } = s;
  for (const conn of s.connections) {
    if (conn.state === "handshake" && now - conn.openedAt >= o.handshakeTimeoutMs) {
      logRepeated(
        s,
        "debug",
        "handshake_timeout",
        conn,
        `Connection from ${conn.peer.address} sent no RegisterInstance` +
          ` within ${o.handshakeTimeoutMs / 1000} s; closing`,
        {
          ip: conn.peer.address,
          reason: "handshake_timeout",
        },
      );
      cut(s, conn, "handshake_timeout", true);
    } else if (conn.replayDeadline > 0) {
      if (conn.peer.frontBytes === 0) conn.replayDeadline = 0;
      else if (now >= conn.replayDeadline) cutSlowConsumer(s, conn, "replay_timeout");
    } else if (o.idleTimeoutMs > 0 && now - conn.lastSeen >= o.idleTimeoutMs) {
      cut(s, conn, "idle_timeout", true);
    }
  }
  reportRepeats(s.log, s.repeats.due(now));
  pruneRegistrationWindows(s, now);
}

/**
 * A frame header that arrived alone is answered at once: today's client writes the
 * header and the body in two writes without TCP_NODELAY, so its kernel holds the
 * body until our ACK, which Linux delays up to 40 ms when we have nothing to send.
 * A Pong carries the ACK back at once.
 */
export function answerLoneHeader(s: RelayState, conn: Connection): void {
  if (conn.state !== "registered" || conn.peer.pendingBytes > 0 || s.o.nudgeIntervalMs <= 0) return;
  s.stats.nudges++;
  deliver(s, conn, encodeFrame({ type: "Pong", timestamp: BigInt(s.clock.now()) }));
}

export function nudge(s: RelayState, now: number): void {
  const interval = s.o.nudgeIntervalMs;
  if (interval <= 0 || s.shuttingDown) return;
  let pong: Uint8Array | null = null;
  for (const conn of s.connections) {
    // A peer with bytes still queued has a frame on its way: that frame is its nudge.
    if (conn.state !== "registered" || now - conn.lastSent < interval || conn.peer.pendingBytes > 0) continue;
    pong ??= encodeFrame({ type: "Pong", timestamp: BigInt(now) });
    s.stats.nudges++;
    deliver(s, conn, pong, true);
  }
}

/** Every connection closed after its queue is sent; no one is told of the others leaving. */
export function closeAll(s: RelayState): void {
  for (const conn of [...s.connections]) cut(s, conn, "shutdown", true);
  reportRepeats(s.log, s.repeats.drain());
}
