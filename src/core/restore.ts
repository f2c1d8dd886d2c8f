/**
 * A tunnel resuming its member (docs/resume.md): the first frame of a new
 * connection is a ResumeInstance instead of a RegisterInstance. Its checks run
 * in registration's order, then the secret's; then the member is found (parked
 * or still on a stale connection here, another node's record in a cluster, or
 * nowhere after a restart), the gap past the tunnel's cursor is found in the
 * session's log or history, and only when all of it is there is the member
 * restored: same name, same ID, the gap sent in order before any live frame.
 * Anything else is one Error ("Resume refused: ..."), counted and logged; the
 * tunnel then tells Sova the connection is lost.
 */
import { stringify as uuidText } from "uuid";
import { broadcastFrom, broadcastPrefix, encodeFrame, type ResumeInstance } from "../protocol/messages.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";
import { countInstance, cut, leaveHandshake, tell } from "./connection.ts";
import { capacityRefusal, registrationAllowed } from "./limits.ts";
import { checkInstanceName, type NameKey } from "./names.ts";
import { instanceRecord, openSession } from "./registration.ts";
import { findGap, type Gap, type LogEntry, logEntries, type Position, positionOf } from "./resume-log.ts";
import { addResumer, newResumption, position, resumableFrame, resumeOn } from "./resume.ts";
import { rosterJoin } from "./roster.ts";
import { errorFrame, logRepeated, type RelayState } from "./state.ts";
import { bump, type ResumeRefusal } from "./stats.ts";
import type { Connection, Instance, Session } from "./types.ts";

/** What a ResumeInstance asks for, checked. */
interface Request {
  session: string;
  idText: string;
  name: string;
  nameKey: NameKey;
  version: string;
  capabilities: string[];
  cursor: Position;
  own: Position;
  acked: number;
  gen: number;
}

/** One Error, then close; counted by reason, and a guessed secret counts toward the address's cool-down. */
function _refuse(s: RelayState, conn: Connection, why: string, reason: ResumeRefusal, req?: Request): void {
  bump(s.stats.resumeRefused, reason);
  if (reason === "secret" || reason === "invalid") s.options.onRegistrationFailed?.(conn.peer.address, reason);
  const fields = { ip: conn.peer.address, reason, instance: req?.name, session: req?.session };
  logRepeated(s, "warn", "resume_refused", conn, `Resumption from ${conn.peer.address} refused: ${why}`, fields);
  conn.peer.send(errorFrame(WIRE_ERRORS.resumeRefused(why)), false, true);
  cut(s, conn, "rejected", true);
}

/** The first frame of a connection was a ResumeInstance. */
export function resumeHandshake(
  s: RelayState,
  conn: Connection,
  msg: ResumeInstance,
  now: number,
): void | Promise<void> {
  const wait = s.options.registrationWait?.(conn.peer.address) ?? 0;
  if (wait > 0) return _refuse(s, conn, WIRE_ERRORS.coolingDown(wait), "cooldown");
  if (!resumeOn(s)) return _refuse(s, conn, "resumption is off on this relay", "off");
  if (msg.version !== s.options.expectedVersion)
    return _refuse(s, conn, WIRE_ERRORS.versionMismatch(s.options.expectedVersion, msg.version), "version");
  const key = s.access.admit(msg.session_token);
  if (key === null) return _refuse(s, conn, WIRE_ERRORS.invalidToken(), "token");
  const checked = checkInstanceName(msg.instance_name);
  const cursor = positionOf(msg.cursor);
  const own = positionOf(msg.own);
  const safe = BigInt(Number.MAX_SAFE_INTEGER);
  if (!checked.ok || !cursor || !own || msg.acked > safe || msg.generation > safe)
    return _refuse(s, conn, "malformed request", "invalid");
  const idText = uuidText(msg.instance_id);
  if (!s.access.checkResumeSecret(key.id, idText, checked.key, msg.secret))
    return _refuse(s, conn, "the secret does not match", "secret");
  // A resumption is a registration for the per-address budget: a tunnel in a loop cannot flood the others or the log.
  if (!registrationAllowed(s, conn, now)) return _refuse(s, conn, WIRE_ERRORS.tooManyRegistrations(), "rate");
  const req: Request = {
    session: key.id,
    idText,
    name: msg.instance_name,
    nameKey: checked.key,
    version: msg.version,
    capabilities: msg.capabilities,
    cursor,
    own,
    acked: Number(msg.acked),
    gen: Number(msg.generation),
  };
  if (s.options.link) return _claimThenRestore(s, conn, req);
  _restore(s, conn, req, now);
}

/** In a cluster the name is taken over first (the secret proved it is this member's), frames held meanwhile. */
function _claimThenRestore(s: RelayState, conn: Connection, req: Request): Promise<void> {
  const link = s.options.link!;
  conn.state = "registering";
  return link.claim(req.session, req.nameKey, true).then(() => {
    if (conn.state !== "registering") return;
    if (s.shuttingDown) return cut(s, conn, "shutdown", true);
    conn.state = "handshake";
    if (!_restore(s, conn, req, s.clock.now())) link.release(req.session, req.nameKey);
  });
}

/** True when the member was restored. */
function _restore(s: RelayState, conn: Connection, req: Request, now: number): boolean {
  const session = s.sessions.get(req.session);
  const held = session?.instances.find((i) => i.idText === req.idText) ?? null;
  if (held === null && session?.names.has(req.nameKey)) {
    _refuse(s, conn, WIRE_ERRORS.nameTaken(req.name), "name_taken", req);
    return false;
  }
  if (held !== null && held.resume === null) {
    _refuse(s, conn, "this member did not ask for resumption", "invalid", req);
    return false;
  }
  // Unknown here, it can only be a member from before a restart, within its window: not one that ended since.
  if (held === null && (now - s.startedAt >= s.o.resumeWindowMs || s.ended.has(req.idText))) {
    _refuse(s, conn, "this member is no longer held: it left, was cut, or its window passed", "gone", req);
    return false;
  }
  // Taking a slot here, it is counted as a registration is: the relay's, the session's, the address's.
  const full = held === null || held.node !== null ? capacityRefusal(s, conn, session) : null;
  if (full !== null) {
    _refuse(s, conn, full.message, "capacity", req);
    return false;
  }
  const gap = _gap(s, session, req, held, now);
  if (gap === null) {
    _refuse(s, conn, "what was broadcast while it was away is no longer all here", "gap", req);
    return false;
  }
  // Higher than any record of it anywhere: the cluster keeps the one with the highest, so it moves here.
  const gen = Math.max(held?.resume?.gen ?? 0, req.gen) + 1;
  const inst = held !== null && held.node === null ? _takeBack(s, conn, held, gen) : _adopt(s, conn, req, held, gen);
  _answer(s, conn, inst, req, gap, held !== null && held.node === null, now);
  return true;
}

/** The gap, each frame after its mark, then the Resumable answer, all before any live frame. */
function _answer(s: RelayState, conn: Connection, inst: Instance, req: Request, gap: Gap, here: boolean, now: number) {
  const r = inst.resume!;
  // Held here, the count is exact; elsewhere it is what the tunnel had acknowledged plus its edits in the gap.
  if (!here) {
    r.consumed = req.acked + gap.own;
    r.ackedN = 0;
  }
  for (const e of gap.frames) {
    conn.peer.send(encodeFrame({ type: "Mark", origin: e.origin, q: BigInt(e.q), n: BigInt(e.n) }), true);
    conn.peer.send(e.frame, true);
  }
  // Last: the tunnel sends its held edits only once the gap is in (they may answer what it holds).
  conn.peer.send(resumableFrame(s, inst, r.consumed, true), true);
  conn.lastSent = now;
  conn.replayDeadline = now + s.o.replayTimeoutMs;
  inst.messagesOut += gap.frames.length;
  s.stats.resumptions++;
  s.stats.resumeReplayed += gap.frames.length;
  s.log.info(
    "resumed",
    `Instance '${inst.name}' resumed by its tunnel with ID ${inst.idText}; replayed ${gap.frames.length} updates` +
      ` of the gap${gap.own > 0 ? `, ${gap.own} of its own edits found relayed` : ""}`,
    {
      ip: conn.peer.address,
      instance: inst.name,
      id: inst.idText,
      session: inst.session.id,
      replayed: gap.frames.length,
      own: gap.own,
      generation: r.gen,
    },
  );
}

/**
 * What lies past the tunnel's cursor, from the session's log, or from history (which a restart with --state-dir
 * keeps); null when neither holds all of it.
 */
function _gap(s: RelayState, session: Session | undefined, req: Request, held: Instance | null, now: number) {
  const history = !s.options.link && s.history?.enabled ? s.history : null;
  const known = session ? position(s, session) : new Map<string, number>();
  if (history !== null) {
    const last = history.lastSeq(req.session);
    // A number past what history gave means frames were lost from it (the database was reset): not this stream.
    if ((req.cursor.get(history.epoch) ?? 0) > last) return null;
    if (last > (known.get(history.epoch) ?? 0)) known.set(history.epoch, last);
  }
  const prefix = broadcastPrefix(req.name);
  const restored = history?.restoredUpTo(req.session) ?? 0;
  const isOwn = (e: LogEntry) => {
    if (e.source !== null) return e.source === req.idText;
    // History (n 0): while the member was held here the name was its own; before a restart, up to what was read back.
    if (e.n === 0) return broadcastFrom(e.frame, prefix) && (held !== null || e.q <= restored);
    // Another node's frame: that node held the member under this name.
    return broadcastFrom(e.frame, prefix);
  };
  const sources: LogEntry[][] = [];
  if (session?.log) sources.push(logEntries(session.log));
  if (history !== null) {
    const origin = history.epoch;
    sources.push(history.entries(req.session, now).map((h) => ({ ...h, origin, q: h.seq, n: 0, source: null })));
  }
  if (sources.length === 0) sources.push([]);
  for (const entries of sources) {
    const gap = findGap(entries, req.cursor, known, req.own, isOwn);
    if (gap !== null) return gap;
  }
  return null;
}

function _attach(s: RelayState, conn: Connection, inst: Instance): void {
  inst.conn = conn;
  conn.instance = inst;
  countInstance(s, inst);
  conn.state = "registered";
  leaveHandshake(s, conn);
  conn.peer.setFrameLimit(s.options.maxMessageSize);
}

/** The member is still here: parked, or on a connection that went half-open and is retired now, unannounced. */
function _takeBack(s: RelayState, conn: Connection, inst: Instance, gen: number): Instance {
  const old = inst.conn;
  if (old.state === "registered") {
    old.state = "closed";
    s.connections.delete(old);
    old.peer.terminate();
    s.stats.resumeTakeovers++;
    s.log.info(
      "resume_takeover",
      `Instance '${inst.name}': its old connection from ${old.peer.address} was stale; the resumed one replaces it`,
      { ip: old.peer.address, instance: inst.name, id: inst.idText, session: inst.session.id },
    );
  }
  s.parked.delete(inst);
  inst.resume!.parkedUntil = 0;
  inst.resume!.gen = gen;
  _attach(s, conn, inst);
  return inst;
}

/**
 * The member becomes this relay's: in place of another node's record (in a cluster: no notice to anyone, the
 * other nodes see it move), or anew after a restart (a join, as a registration's).
 */
function _adopt(s: RelayState, conn: Connection, req: Request, remote: Instance | null, gen: number): Instance {
  const now = s.clock.now();
  const session = s.sessions.get(req.session) ?? openSession(s, req.session, now);
  const registering = { instance_name: req.name, version: req.version, capabilities: req.capabilities };
  const since = remote?.connectedAt ?? now;
  const inst = instanceRecord(s, conn, registering, session, req.nameKey, since, req.idText);
  inst.resume = newResumption(gen);
  if (remote !== null) {
    s.remoteById.delete(req.idText);
    s.parked.delete(remote);
    session.instances = session.instances.map((i) => (i === remote ? inst : i));
    if (remote.resume === null) addResumer(session);
  } else {
    const others = session.instances;
    session.instances = [...others, inst];
    rosterJoin(session.roster, others, session.instances, inst);
    session.names.add(req.nameKey);
    addResumer(session);
    if (session.presenceWatchers > 0) {
      const notice = encodeFrame({ type: "InstanceConnected", instance_id: inst.id, instance_name: inst.name });
      tell(s, others, notice, true);
    }
  }
  if (inst.capabilities.has("presence")) session.presenceWatchers++;
  _attach(s, conn, inst);
  s.instanceCount++;
  s.options.link?.joined(inst);
  return inst;
}
