/**
 * Resumption, the relay's side (docs/resume.md): only for members that asked
 * for it ("resume" in capabilities: a tunnel, never a plain Sova). Such a member
 * is told a secret and where it stands (Resumable); every StateBroadcast it gets
 * is numbered by a Mark (its stream and number, and this relay's log entry); each
 * edit it sends is acknowledged (Acked). When its connection is lost it is parked
 * for the grace window instead of leaving: the others are not told, its name and
 * ID stay, and its session's frames are logged until it resumes (restore.ts) or
 * the window ends (a normal leave).
 */
import { encodeFrame } from "../protocol/messages.ts";
import { cutSlowConsumer } from "./connection.ts";
import { createLog, cursorOf, logAppend, logTrim, type Position } from "./resume-log.ts";
import type { RelayState } from "./state.ts";
import type { Connection, Instance, Resumption, Session } from "./types.ts";

export const RESUME_CAPABILITY = "resume";
/** What a member that asked for resumption may send besides upstream's variants. */
export const TUNNEL_VARIANTS = ["Ack", "Leave"] as const;
/** A member that may resume and said nothing for this long is taken for gone (its tunnel speaks every 2 s). */
export const RESUME_SILENCE_MS = 6000;
/** Log entries outlive the grace window by this much: a tunnel may notice its loss a few seconds late. */
const LOG_AGE_MARGIN_MS = 10_000;
/** Acknowledgements are looked at once the log holds more than this (a session's members are walked then). */
const ACK_TRIM_AFTER = 64;

export const resumeOn = (s: RelayState): boolean => s.o.resumeWindowMs > 0;

export function newResumption(gen = 0): Resumption {
  return { gen, consumed: 0, ackedN: 0, parkedUntil: 0 };
}

/** One more member of `session` may resume: from now on its frames are logged. */
export function addResumer(session: Session): void {
  session.resumers++;
}

/** Where a session's streams stand here: the cursor a newcomer starts from, and what a gap must reach. */
export function position(s: RelayState, session: Session): Position {
  const p = new Map(session.heads);
  const h = s.history;
  // After a restart the heads are empty, but history read back from disk goes on numbering.
  if (!s.options.link && h?.enabled) {
    const last = h.lastSeq(session.id);
    if (last > (p.get(h.epoch) ?? 0)) p.set(h.epoch, last);
  }
  return p;
}

/** A frame's place in its stream; `mark` goes before it to every member that may resume. */
export interface Stamp {
  readonly origin: string;
  readonly q: number;
  readonly mark: Uint8Array | null;
  /** A small frame and its mark in one buffer, shared by those members: one send each instead of two. */
  readonly marked: Uint8Array | null;
}

/** Up to this size a frame is copied behind its mark; a larger one is sent after it, uncopied. */
const JOIN_BELOW = 4096;

/**
 * Numbers a local member's broadcast: by its node's stream in a cluster, by history here when it is kept (so a
 * restart with --state-dir goes on from the same numbers), else by the session's own counter.
 */
export function stampLocal(s: RelayState, inst: Instance, frame: Uint8Array, now: number): Stamp {
  const session = inst.session;
  const { link } = s.options;
  const history = s.history;
  if (link) return record(s, session, link.origin, link.broadcast(inst, frame), frame, now, inst.idText);
  if (history?.enabled) {
    const q = history.append(session.id, frame, now);
    // Written before any member that may resume is sent it: after a crash, a number it saw is never given again.
    if (session.resumers > 0) history.durable();
    return record(s, session, history.epoch, q, frame, now, inst.idText);
  }
  return record(s, session, session.origin, ++session.seq, frame, now, inst.idText);
}

/** Notes a frame of `session` (local or from another node) and logs it while a member may resume. */
export function record(
  s: RelayState,
  session: Session,
  origin: string,
  q: number,
  frame: Uint8Array,
  now: number,
  source: string | null,
): Stamp {
  session.heads.set(origin, q);
  if (session.resumers === 0) return { origin, q, mark: null, marked: null };
  session.log ??= createLog();
  const entry = logAppend(session.log, origin, q, frame, now, source);
  _trim(s, session, now);
  const mark = encodeFrame({ type: "Mark", origin, q: BigInt(q), n: BigInt(entry.n) });
  let marked: Uint8Array | null = null;
  if (frame.length < JOIN_BELOW) {
    marked = new Uint8Array(mark.length + frame.length);
    marked.set(mark);
    marked.set(frame, mark.length);
  }
  return { origin, q, mark, marked };
}

function _trim(s: RelayState, session: Session, now: number): void {
  const log = session.log!;
  const ackedN = log.entries.length - log.head > ACK_TRIM_AFTER ? _ackedByAll(session) : 0;
  const lost = logTrim(log, now, {
    maxBytes: s.o.resumeBufferBytes,
    maxAgeMs: s.o.resumeWindowMs + LOG_AGE_MARGIN_MS,
    ackedN,
  });
  if (lost === 0) return;
  s.stats.resumeLogEvicted += lost;
  // One line per session a minute: a busy session over its bound would otherwise log every frame.
  if (s.repeats.first("resume_buffer_full", `session ${session.id}`, now, { session: session.id, level: "warn" })) {
    s.log.warn(
      "resume_buffer_full",
      `Session ${session.id}: its resumption log passed ${s.o.resumeBufferBytes} bytes; frames not yet passed on` +
        ` to every tunnel were dropped (a tunnel that needs them will be told the connection is lost)`,
      { session: session.id, dropped: lost },
    );
  }
}

/** The log entry every member that may resume has passed on (0 when one is another node's: no acks reach here). */
function _ackedByAll(session: Session): number {
  let min = Number.POSITIVE_INFINITY;
  for (const m of session.instances) {
    if (m.resume === null) continue;
    if (m.node !== null) return 0;
    if (m.resume.ackedN < min) min = m.resume.ackedN;
  }
  return Number.isFinite(min) ? min : 0;
}

/** A broadcast to one member, its mark first when the member may resume; false when the peer refused it. */
export function sendNumbered(member: Instance, stamp: Stamp, frame: Uint8Array): boolean {
  const peer = member.conn.peer;
  if (stamp.mark === null || member.resume === null) return peer.send(frame);
  if (stamp.marked !== null) return peer.send(stamp.marked);
  return peer.send(stamp.mark) && peer.send(frame);
}

/** A frame only a tunnel reads: not a nudge for Sova (it never sees it), so lastSent stays. */
export function sendExtension(s: RelayState, conn: Connection, frame: Uint8Array): void {
  if (!conn.peer.send(frame, false, true)) cutSlowConsumer(s, conn);
}

/**
 * One StateUpdate of `inst` consumed (relayed as `stamp`, or dropped): acknowledged to its tunnel, in a cluster
 * only once the frame reached the cluster's server.
 */
export function ackEdit(s: RelayState, inst: Instance, stamp: Stamp | null): void {
  const r = inst.resume;
  if (r === null) return;
  r.consumed++;
  const frame = encodeFrame({ type: "Acked", origin: stamp?.origin ?? "", q: BigInt(stamp?.q ?? 0) });
  const conn = inst.conn;
  // A resumption meanwhile counted this edit itself, from the log.
  const send = () => {
    if (inst.conn === conn && conn.state === "registered") sendExtension(s, conn, frame);
  };
  if (s.options.link && stamp !== null) s.options.link.afterPublished(send);
  else send();
}

/** The tunnel passed on every log entry up to `n`. */
export function tunnelAcked(inst: Instance, n: bigint): void {
  const r = inst.resume;
  const log = inst.session.log;
  if (r === null || log === null || n >= BigInt(log.nextN)) return;
  if (Number(n) > r.ackedN) r.ackedN = Number(n);
}

/**
 * The secret and the cursor, after a registration's history (its response listed the members) or a resumption's
 * answer (with the members, so the tunnel can tell Sova who left or joined while it was away).
 */
export function resumableFrame(s: RelayState, inst: Instance, consumed: number, resumed = false): Uint8Array {
  const session = inst.session;
  return encodeFrame({
    type: "Resumable",
    secret: s.access.resumeSecret(session.id, inst.idText, inst.nameKey),
    cursor: cursorOf(position(s, session)),
    window_ms: BigInt(s.o.resumeWindowMs),
    generation: BigInt(inst.resume?.gen ?? 0),
    consumed: BigInt(consumed),
    // Who is in the session now: the tunnel tells Sova of those who left (or joined) while it was away.
    members: resumed ? session.instances.filter((i) => i !== inst).map((i) => [i.id, i.name]) : [],
  });
}

/** A registration that asked for resumption: the tunnel learns where it starts, after its history, before any live frame. */
export function startResumption(s: RelayState, conn: Connection, inst: Instance): void {
  addResumer(inst.session);
  conn.peer.send(resumableFrame(s, inst, 0), true);
}

/** The member's socket is gone: it stays in its session for the grace window, its frames logged for it. */
export function park(s: RelayState, conn: Connection, now: number): void {
  const inst = conn.instance!;
  conn.state = "parked";
  s.connections.delete(conn);
  inst.resume!.parkedUntil = now + s.o.resumeWindowMs;
  s.parked.add(inst);
  s.stats.parked++;
  s.log.info(
    "parked",
    `Instance '${inst.name}' lost its connection; kept in its session for` +
      ` ${s.o.resumeWindowMs / 1000} s for its tunnel to resume`,
    { ip: conn.peer.address, instance: inst.name, id: inst.idText, session: inst.session.id },
  );
}

/** Another node holding a member that may resume went down: kept here for the grace window too. */
export function parkRemote(s: RelayState, inst: Instance, now: number): void {
  inst.resume!.parkedUntil = now + s.o.resumeWindowMs;
  s.parked.add(inst);
  s.stats.parked++;
  s.log.info(
    "parked",
    `Instance '${inst.name}' (node ${inst.node}) lost its node; kept in its session for` +
      ` ${s.o.resumeWindowMs / 1000} s for its tunnel to resume on another node`,
    { instance: inst.name, id: inst.idText, session: inst.session.id, node: inst.node },
  );
}

export function resumeBufferBytes(s: RelayState): number {
  let bytes = 0;
  for (const session of s.sessions.values()) bytes += session.log?.bytes ?? 0;
  return bytes;
}
