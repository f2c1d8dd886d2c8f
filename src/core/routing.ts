/**
 * Routing (docs/protocol.md, "Connection flow" 5-6): a StateUpdate from a registered
 * instance becomes one StateBroadcast, kept in the session's history and sent to
 * every other member; and the answer to what an instance may not send.
 */
import { encodeBroadcastFrame, type StateUpdate, type Uuid } from "../protocol/messages.ts";
import { cutAll, deliver } from "./connection.ts";
import { countDrop, errorFrame, logRepeated, type RelayState, who } from "./state.ts";
import { bump, observe } from "./stats.ts";
import type { Connection, Instance, Session } from "./types.ts";
import { addToTurn, takeTurn } from "./turn.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";
import { sendNumbered, type Stamp, stampLocal } from "./resume.ts";

function _sameId(a: Uuid, b: Uuid): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Returns the broadcast's place in its stream (null: dropped, or nobody needs it numbered). */
export function relayUpdate(
  s: RelayState,
  inst: Instance,
  msg: StateUpdate,
  now: number,
  arrived: number,
): Stamp | null {
  const stats = s.stats;
  if (!_sameId(msg.source_instance_id, inst.id)) {
    countDrop(s, "invalid", inst);
    logRepeated(
      s,
      "warn",
      "id_mismatch",
      inst.conn,
      `Instance '${inst.name}' sent a StateUpdate with another instance's ID`,
      {
        ...who(inst.conn),
        reason: "id_mismatch",
      },
    );
    deliver(s, inst.conn, errorFrame(WIRE_ERRORS.idMismatch()));
    return null;
  }
  stats.broadcasts++;
  // Every member has now heard of it: its departure is told to all, even during a register/leave storm.
  inst.spoke = true;
  const peers = inst.session.instances;
  const watch = s.options.watch;
  const watched = watch?.wants(inst.session.id) === true;
  // With a cluster, members on other nodes may have joined before we heard of them: always publish.
  // A sender that may resume is told the number of each edit, even alone.
  if (peers.length < 2 && !s.history?.enabled && !s.options.link && inst.resume === null && !watched) return null;
  const frame = encodeBroadcastFrame(inst.prefix, msg.timestamp, msg.update_data);
  const stamp = stampLocal(s, inst, frame, now);
  if (watched) watch!.frame(inst.session.id, frame, now);
  if (fanOut(s, inst.session, peers, inst, stamp, frame, now, arrived))
    observe(stats.relayLatency, (s.clock.monotonic() - arrived) / 1000);
  return stamp;
}

/**
 * One broadcast to every registered member but its sender (null: one from another
 * node, whose sender is not here). With turns (turn.ts), kept for the end of this turn
 * for the members that do not number their frames; false when kept (the relay latency is
 * then timed when it is queued). A member that cannot take it is cut after the loop, so
 * everyone hears this update before hearing who left.
 */
export function fanOut(
  s: RelayState,
  session: Session,
  members: readonly Instance[],
  sender: Instance | null,
  stamp: Stamp,
  frame: Uint8Array,
  now: number,
  arrived = -1,
): boolean {
  if (members.length === 0 || (members.length === 1 && members[0] === sender)) return true;
  const turns = s.options.endOfTurn !== undefined;
  // Members that number their frames (they may resume) get each now; the others, with turns, at the turn's end.
  let slow: Connection[] | null = null;
  let forTurn = session.resumers === 0 ? members.length : 0;
  if (!turns || session.resumers > 0)
    for (let i = 0; i < members.length; i++) {
      const other = members[i]!;
      if (other === sender || other.conn.state !== "registered") continue;
      if (turns && other.resume === null) {
        forTurn++;
        continue;
      }
      if (sendNumbered(other, stamp, frame)) {
        other.conn.lastSent = now;
        other.messagesOut++;
        s.stats.deliveries++;
      } else if (slow === null) slow = [other.conn];
      else slow.push(other.conn);
    }
  // A session whose members here all resume (every player through the tunnel) needs no turn.
  const kept = turns && forTurn > 0;
  if (kept) _keepForTurn(s, session, members, sender, frame, arrived, now);
  cutAll(s, slow);
  return !kept;
}

/** Keeps `frame` in `session`'s turn, asking for the turn's end once per turn. */
function _keepForTurn(
  s: RelayState,
  session: Session,
  members: readonly Instance[],
  sender: Instance | null,
  frame: Uint8Array,
  arrived: number,
  now: number,
): void {
  if (!s.turnEnding) {
    s.turnEnding = true;
    s.options.endOfTurn!(() => takeTurns(s));
  }
  if (addToTurn(s, session, members, sender, frame, arrived, now)) return;
  // Those who could not take the last turn are cut once this frame is kept: it reaches everyone first.
  const slow = takeTurn(s, session);
  addToTurn(s, session, members, sender, frame, arrived, now);
  cutAll(s, slow);
}

/** The turn ends (or the relay stops): every session's broadcasts of it are queued. */
export function takeTurns(s: RelayState): void {
  s.turnEnding = false;
  // In the order the sessions' first frames came: the oldest waited longest. Should one throw, the rest
  // (still listed) are taken at the next turn's end, not never.
  const sessions = s.turns;
  for (let i = 0; i < sessions.length; i++) cutAll(s, takeTurn(s, sessions[i]!));
  sessions.length = 0;
}

/** A frame a registered instance may not send: counted, logged, answered with an Error. */
export function invalid(s: RelayState, inst: Instance, why: string): void {
  countDrop(s, "invalid", inst);
  bump(s.stats.messagesReceived, "invalid");
  logRepeated(s, "warn", "invalid_message", inst.conn, `Invalid message from instance '${inst.name}': ${why}`, {
    ...who(inst.conn),
    reason: why,
  });
  deliver(s, inst.conn, errorFrame(WIRE_ERRORS.invalidMessage(why)));
}
