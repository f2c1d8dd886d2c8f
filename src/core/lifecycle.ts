/**
 * A connection's life as the transport drives it: opened, each frame dispatched
 * by state (handshake, registered), oversized frames, the socket gone, cuts for
 * the transport's reasons, and the timed parts (deadlines, nudges).
 */
import { addressGroup } from "../lib/cidr.ts";
import { decodeMessage, encodeFrame, type Message, peekVariant, type ResumeInstance } from "../protocol/messages.ts";
import { resumeHandshake } from "./restore.ts";
import { cut, cutSlowConsumer, deliver, enterHandshake, finish } from "./connection.ts";
import { removeRemote } from "./remote.ts";
import { ackEdit, park, RESUME_SILENCE_MS, resumeOn, TUNNEL_VARIANTS, tunnelAcked } from "./resume.ts";
import { admitHandshake, pruneRegistrationWindows, withinRate } from "./limits.ts";
import { handshake, reject } from "./registration.ts";
import { reportRepeats } from "../lib/repeats.ts";
import { invalid, relayUpdate, takeTurns } from "./routing.ts";
import { awaitsTurn } from "./turn.ts";
import { countDrop, errorFrame, logRepeated, type RelayState, reasonOf, who } from "./state.ts";
import { bump, type DisconnectReason } from "./stats.ts";
import type { Connection, Instance, Peer } from "./types.ts";
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
    replayMark: 0,
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
    const resuming = body.length > 0 && peekVariant(body) === "ResumeInstance";
    const claiming = resuming ? _resume(s, conn, body, now) : handshake(s, conn, body, now);
    if (claiming) void claiming.then(() => _replayHeld(s, conn));
    return;
  }
  if (conn.state === "registering") return _hold(s, conn, body);
  const inst = conn.instance!;
  if (!withinRate(s, inst, now, body.length)) return _unread(s, inst, body);
  inst.messagesIn++;
  inst.lastActivity = now;
  if (body.length === 0) return invalid(s, inst, "empty frame");
  let msg: Message;
  try {
    msg = decodeMessage(body, inst.resume ? { accept: TUNNEL_VARIANTS } : undefined);
  } catch (error) {
    invalid(s, inst, reasonOf(error));
    return _unread(s, inst, body);
  }
  bump(s.stats.messagesReceived, msg.type);
  switch (msg.type) {
    case "StateUpdate":
      return ackEdit(s, inst, relayUpdate(s, inst, msg, now, arrived));
    case "Ping":
      deliver(s, conn, encodeFrame({ type: "Pong", timestamp: msg.timestamp }));
      return;
    case "Pong":
      return;
    case "Ack":
      return tunnelAcked(inst, msg.n);
    case "Leave":
      return _leave(s, conn);
    default:
      return invalid(s, inst, `unexpected ${msg.type} from an instance`);
  }
}

/** A tunnel's first frame asks to resume its member (restore.ts). */
function _resume(s: RelayState, conn: Connection, body: Uint8Array, now: number): void | Promise<void> {
  let msg: Message;
  try {
    msg = decodeMessage(body, { accept: ["ResumeInstance"] });
  } catch (error) {
    s.stats.drops.invalid++;
    return reject(s, conn, WIRE_ERRORS.invalidMessage(reasonOf(error)), "invalid");
  }
  bump(s.stats.messagesReceived, msg.type);
  return resumeHandshake(s, conn, msg as ResumeInstance, now);
}

/** A frame dropped unread: when it was an edit of a member that may resume, its tunnel still counts it consumed. */
function _unread(s: RelayState, inst: Instance, body: Uint8Array): void {
  if (inst.resume !== null && peekVariant(body) === "StateUpdate") ackEdit(s, inst, null);
}

/** The tunnel's player left: a normal leave, now, without waiting for a grace window. */
function _leave(s: RelayState, conn: Connection): void {
  const inst = conn.instance!;
  s.log.debug("left", `Instance '${inst.name}' left through its tunnel`, who(conn));
  finish(s, conn, "closed");
  conn.peer.close();
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

/** The socket is gone; a member that may resume is parked for its grace window instead of leaving. */
export function closed(s: RelayState, conn: Connection, reason: DisconnectReason): void {
  if (conn.state === "closed" || conn.state === "parked") return;
  if (conn.state === "registered" && conn.instance?.resume && resumeOn(s) && !s.shuttingDown) {
    return park(s, conn, s.clock.now());
  }
  finish(s, conn, reason);
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
      _judgeReplay(s, conn, now);
    } else if (o.idleTimeoutMs > 0 && now - conn.lastSeen >= o.idleTimeoutMs) {
      cut(s, conn, "idle_timeout", true);
    } else if (conn.instance?.resume && conn.state === "registered" && now - conn.lastSeen >= RESUME_SILENCE_MS) {
      // A tunnel says something every 2 s: this connection went half-open. Parked, its window starts now;
      // parked first, so that the transport reporting the socket gone does not park it again.
      park(s, conn, now);
      conn.peer.terminate();
    }
  }
  _expireParked(s, now);
  reportRepeats(s.log, s.repeats.due(now));
  reportRepeats(s.log, s.memberLines.due(now));
  pruneRegistrationWindows(s, now);
}

/** Parked members whose tunnel did not come back within the grace window: a normal leave now. */
function _expireParked(s: RelayState, now: number): void {
  for (const inst of s.parked) {
    if (inst.resume!.parkedUntil > now) continue;
    s.parked.delete(inst);
    s.log.info(
      "resume_expired",
      `Instance '${inst.name}' was not resumed within ${s.o.resumeWindowMs / 1000} s; the others are told it left`,
      { instance: inst.name, id: inst.idText, session: inst.session.id, node: inst.node ?? undefined },
    );
    if (inst.node === null) finish(s, inst.conn, "resume_expired");
    else {
      s.stats.disconnects.resume_expired++;
      removeRemote(s, inst);
    }
  }
}

/**
 * Bytes of its registration response and history a newcomer must take within --replay-timeout, again and again,
 * until it has all of them: a player on a slow link (3.2 Mbit/s against a 16 MiB history) gets it whole, however
 * long it takes, while a peer that stopped reading is cut after the timeout as before.
 */
export const REPLAY_PROGRESS_BYTES = 64 * 1024;

function _judgeReplay(s: RelayState, conn: Connection, now: number): void {
  const left = conn.peer.frontBytes;
  if (left === 0) conn.replayDeadline = 0;
  else if (conn.replayMark - left >= REPLAY_PROGRESS_BYTES) {
    conn.replayMark = left;
    conn.replayDeadline = now + s.o.replayTimeoutMs;
  } else if (now >= conn.replayDeadline) cutSlowConsumer(s, conn, "replay_timeout");
}

/**
 * A frame header that arrived alone is answered at once: today's client writes the
 * header and the body in two writes without TCP_NODELAY, so its kernel holds the
 * body until our ACK, which Linux delays up to 40 ms when we have nothing to send.
 * A Pong carries the ACK back at once.
 */
export function answerLoneHeader(s: RelayState, conn: Connection): void {
  if (conn.state !== "registered" || conn.peer.pendingBytes > 0 || s.o.nudgeIntervalMs <= 0) return;
  if (awaitsTurn(conn)) return;
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
    if (awaitsTurn(conn)) continue;
    pong ??= encodeFrame({ type: "Pong", timestamp: BigInt(now) });
    s.stats.nudges++;
    deliver(s, conn, pong, true);
  }
}

/** Every connection closed after its queue is sent; no one is told of the others leaving. */
export function closeAll(s: RelayState): void {
  takeTurns(s);
  for (const conn of [...s.connections]) cut(s, conn, "shutdown", true);
  reportRepeats(s.log, s.repeats.drain());
  reportRepeats(s.log, s.memberLines.drain());
}
