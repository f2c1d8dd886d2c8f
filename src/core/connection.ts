/**
 * One connection's sends and its end: delivering a frame (a peer past its bound
 * is cut on the spot), cutting with the last word, and the bookkeeping when a
 * connection goes (its session, the others' notices, the counters).
 */
import { encodeFrame } from "../protocol/messages.ts";
import { hearDeparture } from "./notices.ts";
import { countDrop, logRepeated, type RelayState, who } from "./state.ts";
import type { DisconnectReason } from "./stats.ts";
import type { Connection, Instance } from "./types.ts";
import { takeTurn } from "./turn.ts";

export const REASON_TEXT: Record<DisconnectReason, string> = {
  closed: "connection closed",
  error: "connection error",
  handshake_timeout: "no RegisterInstance within the handshake timeout",
  handshake_limit: "too many connections still handshaking",
  idle_timeout: "idle timeout",
  slow_consumer: "slow consumer",
  replay_timeout: "did not take its registration response and history in time",
  memory_pressure: "the relay's unsent data passed its bound and this peer held the most",
  rejected: "registration rejected",
  protocol: "protocol error",
  shutdown: "relay shutting down",
  resume_expired: "its tunnel did not resume within the grace window",
};

export type SlowReason = "slow_consumer" | "memory_pressure" | "replay_timeout";

function _countUp(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}

export function enterHandshake(s: RelayState, conn: Connection): void {
  s.handshaking++;
  const group = s.handshakesByGroup.get(conn.group);
  if (group) group.push(conn);
  else s.handshakesByGroup.set(conn.group, [conn]);
}

export function leaveHandshake(s: RelayState, conn: Connection): void {
  s.handshaking--;
  // A group holds a few (--max-handshakes-per-ip): an array, read without allocating by eviction.ts.
  const group = s.handshakesByGroup.get(conn.group);
  const at = group?.indexOf(conn) ?? -1;
  if (at === -1) return;
  group!.splice(at, 1);
  if (group!.length === 0) s.handshakesByGroup.delete(conn.group);
}

export function cut(s: RelayState, conn: Connection, reason: DisconnectReason, graceful: boolean): void {
  if (conn.state === "closed") return;
  const wasRegistered = conn.state === "registered";
  finish(s, conn, reason);
  // A tunnel that may resume is not told the connection is lost when the relay only stops: it resumes here after
  // the restart, or on another node (docs/resume.md).
  if (wasRegistered && reason === "shutdown" && conn.instance?.resume) conn.peer.close();
  // Today's Sova client marks itself disconnected only on this exact Error; without
  // it, it keeps saying it is connected and piles edits into a dead channel.
  else if (wasRegistered) {
    s.stats.lastWords++;
    conn.peer.closeWith(s.connectionLost);
  } else if (graceful) conn.peer.close();
  else conn.peer.terminate();
}

/**
 * Deliver one frame; a peer whose queue passes the bound is cut on the spot. `shared`: the
 * same bytes go to many peers (a nudge sweep's Pong), so the transport queues them by
 * reference instead of copying them per peer.
 */
export function deliver(s: RelayState, conn: Connection, frame: Uint8Array, shared = false): boolean {
  // After the broadcasts of this turn it is to hear before this frame (turn.ts).
  const session = conn.instance?.session;
  if (session?.turn) cutAll(s, takeTurn(s, session));
  conn.lastSent = s.clock.now();
  if (conn.peer.send(frame, false, !shared)) return true;
  cutSlowConsumer(s, conn);
  return false;
}

/** Cuts each of `conns` (null: none) as a slow consumer. */
export function cutAll(s: RelayState, conns: readonly Connection[] | null): void {
  if (conns !== null) for (const conn of conns) cutSlowConsumer(s, conn);
}

export function cutSlowConsumer(s: RelayState, conn: Connection, reason: SlowReason = "slow_consumer"): void {
  if (conn.state === "closed") return;
  const inst = conn.instance;
  countDrop(s, "slow_consumer", inst);
  const pending = conn.peer.pendingBytes;
  s.log.warn(
    "slow_consumer",
    `${inst ? `Instance '${inst.name}'` : `Connection from ${conn.peer.address}`} cut as a slow consumer:` +
      ` ${pending} bytes unsent (${REASON_TEXT[reason]})`,
    { ...who(conn), pending_bytes: pending, reason },
  );
  cut(s, conn, reason, false);
}

export function finish(s: RelayState, conn: Connection, reason: DisconnectReason): void {
  const inst = conn.instance;
  // A parked member ends here too, when its grace window runs out.
  const wasRegistered = conn.state === "registered" || conn.state === "parked";
  // A connection waiting for the cluster's name claim still holds its handshake slot.
  if (conn.state === "handshake" || conn.state === "registering") leaveHandshake(s, conn);
  conn.state = "closed";
  s.connections.delete(conn);
  s.stats.disconnects[reason]++;
  if (!wasRegistered || !inst) {
    const message =
      `Connection from ${conn.peer.address}:${conn.peer.port}` + ` closed before registering (${REASON_TEXT[reason]})`;
    logRepeated(s, "debug", "connection_closed", conn, message, { ip: conn.peer.address, reason });
    return;
  }
  const session = inst.session;
  session.instances = session.instances.filter((i) => i !== inst);
  session.names.delete(inst.nameKey);
  if (inst.capabilities.has("presence")) session.presenceWatchers--;
  s.instanceCount--;
  uncountInstance(s, inst);
  // Stopping, a member that may resume is not announced as gone: the other nodes park it when this one leaves.
  if (!(inst.resume && reason === "shutdown")) s.options.link?.left(inst, inst.nameKey);
  dropResumer(s, inst);
  if (session.instances.length === 0) {
    s.sessions.delete(session.id);
    s.log.debug("session_emptied", `Session ${session.id} is empty`, { session: session.id });
  }
  // Its own budget (MEMBER_LINES in state.ts): an ensemble is logged whole, a register/leave flood counted.
  logRepeated(
    s,
    "info",
    "disconnected",
    conn,
    `Instance '${inst.name}' disconnected: ${REASON_TEXT[reason]}`,
    { ...who(conn, true), reason },
    s.memberLines,
  );
  if (s.shuttingDown && reason === "shutdown") return;
  tell(
    s,
    hearDeparture(s, session, inst),
    encodeFrame({ type: "InstanceDisconnected", instance_id: inst.id, instance_name: inst.name }),
  );
}

/** `inst` no longer holds a slot here (it left, or another node holds it now). */
export function uncountInstance(s: RelayState, inst: Instance): void {
  if (inst.countedGroup !== undefined) _countUp(s.instancesByGroup, inst.countedGroup, -1);
  inst.countedGroup = undefined;
}

/** `inst` counts against its connection's address group (again, when a resumption moved it to another). */
export function countInstance(s: RelayState, inst: Instance): void {
  const group = inst.conn.group;
  if (inst.countedGroup === group) return;
  if (inst.countedGroup !== undefined) _countUp(s.instancesByGroup, inst.countedGroup, -1);
  inst.countedGroup = group;
  _countUp(s.instancesByGroup, group, 1);
}

/** `inst` may no longer resume here (it left, or its record is gone): once none may, the session's log goes. */
export function dropResumer(s: RelayState, inst: Instance): void {
  if (inst.resume === null) return;
  s.parked.delete(inst);
  if (s.clock.now() - s.startedAt < s.o.resumeWindowMs) s.ended.add(inst.idText);
  else if (s.ended.size > 0) s.ended.clear();
  const session = inst.session;
  if (--session.resumers <= 0) {
    session.resumers = 0;
    session.log = null;
  }
}

/** A notice to the registered members of `members` (only those that asked for presence when `watchers`). */
export function tell(s: RelayState, members: readonly Instance[], notice: Uint8Array, watchers = false): void {
  for (const m of members) {
    if (m.conn.state === "registered" && (!watchers || m.capabilities.has("presence"))) deliver(s, m.conn, notice);
  }
}
