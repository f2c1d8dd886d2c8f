/**
 * Presence notices (docs/protocol.md, "Connection flow" 7 and "Capabilities and presence"): who joined
 * and who left. Register/leave churn from many addresses, each within its own
 * registration budget, once sent one member 12,000 InstanceDisconnected in 20 s.
 *
 * Each session has a budget of notices (a token bucket). Within it every
 * member is told, as the protocol says. Past it, during the storm, a join is not
 * announced, and a departure is told only to the members that learned of the
 * instance: those that got it in their RegistrationResponse (they registered
 * after it), the presence watchers that were told it joined, and everyone once it
 * sent an update. A member never hears of an instance it never saw, so its view
 * stays whole; what is not sent is counted and logged once a minute per session.
 */
import type { RelayState } from "./state.ts";
import type { Instance, NoticeBudget, Session } from "./types.ts";

/** Notices a session may send at once: an ensemble joining or dropping together. */
const NOTICE_BURST = 40;
/** Earned back per second. */
const NOTICES_PER_SECOND = 4;

export function noticeBudget(now: number): NoticeBudget {
  return { tokens: NOTICE_BURST, at: now };
}

function _take(b: NoticeBudget, now: number): boolean {
  b.tokens = Math.min(NOTICE_BURST, b.tokens + (Math.max(0, now - b.at) * NOTICES_PER_SECOND) / 1000);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens--;
  return true;
}

function _suppressed(s: RelayState, session: Session, count: number): void {
  if (count === 0) return;
  s.stats.noticesSuppressed += count;
  if (s.repeats.first("notices_limited", `session ${session.id}`, s.clock.now(), { level: "warn", ip: session.id }))
    s.log.warn(
      "notices_limited",
      `Session ${session.id}: instances join and leave faster than ${NOTICES_PER_SECOND} a second;` +
        ` members are told only of instances they know of (logged once a minute)`,
      { session: session.id, reason: "notice_storm" },
    );
}

/** Who gets InstanceConnected for `inst`: the presence watchers among `others`, within the session's budget. */
export function hearJoin(s: RelayState, session: Session, inst: Instance, others: readonly Instance[]): Instance[] {
  if (session.presenceWatchers === 0) return [];
  const watchers = others.filter((m) => m.conn.state === "registered" && m.capabilities.has("presence"));
  if (watchers.length === 0) return [];
  if (!_take(session.notices, s.clock.now())) {
    _suppressed(s, session, watchers.length);
    return [];
  }
  inst.announced = true;
  return watchers;
}

/** Whether `member` has heard of `inst`: from its RegistrationResponse, a join notice, or an update. */
function _knows(member: Instance, inst: Instance): boolean {
  return inst.spoke || member.seq > inst.seq || (inst.announced && member.capabilities.has("presence"));
}

/** Who gets InstanceDisconnected for `inst`: every member left within the budget, else those who know of it. */
export function hearDeparture(s: RelayState, session: Session, inst: Instance): Instance[] {
  const members = session.instances.filter((m) => m.conn.state === "registered");
  if (members.length === 0 || _take(session.notices, s.clock.now())) return members;
  const told = members.filter((m) => _knows(m, inst));
  _suppressed(s, session, members.length - told.length);
  return told;
}
