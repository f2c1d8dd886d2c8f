/**
 * Routing (docs/protocol.md, "Connection flow" 5-6): a StateUpdate from a registered
 * instance becomes one StateBroadcast, kept in the session's history and sent to
 * every other member; and the answer to what an instance may not send.
 */
import { encodeBroadcastFrame, type StateUpdate, type Uuid } from "../protocol/messages.ts";
import { cutSlowConsumer, deliver } from "./connection.ts";
import { countDrop, errorFrame, logRepeated, type RelayState, who } from "./state.ts";
import { bump, observe } from "./stats.ts";
import type { Connection, Instance } from "./types.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

function _sameId(a: Uuid, b: Uuid): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function relayUpdate(s: RelayState, inst: Instance, msg: StateUpdate, now: number, arrived: number): void {
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
    return;
  }
  stats.broadcasts++;
  const peers = inst.session.instances;
  const history = s.history;
  const keep = history?.enabled === true;
  // With a cluster, members on other nodes may have joined before we heard of them: always publish.
  if (peers.length < 2 && !keep && !s.options.link) return;
  const frame = encodeBroadcastFrame(inst.prefix, msg.timestamp, msg.update_data);
  if (keep) history.append(inst.session.id, frame, now);
  s.options.link?.broadcast(inst, frame);
  let slow: Connection[] | null = null;
  for (let i = 0; i < peers.length; i++) {
    const other = peers[i]!;
    if (other === inst || other.conn.state !== "registered") continue;
    if (other.conn.peer.send(frame)) {
      other.conn.lastSent = now;
      other.messagesOut++;
      stats.deliveries++;
    } else if (slow === null) slow = [other.conn];
    else slow.push(other.conn);
  }
  observe(stats.relayLatency, (s.clock.monotonic() - arrived) / 1000);
  // Cut after the loop, so everyone hears this update before hearing who left.
  if (slow !== null) for (const conn of slow) cutSlowConsumer(s, conn);
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
