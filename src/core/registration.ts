/**
 * Registration (docs/protocol.md, "Connection flow" 2-4): the first frame must be a
 * RegisterInstance; its checks run in the document's order; a newcomer gets its
 * instance record, a place in the session's roster, the RegistrationResponse and
 * the session's history, and the members that asked hear that it joined.
 */
import { parse as parseUuid } from "uuid";
import {
  broadcastPrefix,
  decodeMessage,
  encodeFrame,
  instanceInfoHead,
  type Message,
  peekVariant,
  type RegisterInstance,
  registrationResponseHead,
  systemTimeFromMillis,
} from "../protocol/messages.ts";
import { checkInstanceName, type NameKey } from "./names.ts";
import { createRoster, rosterEntries, rosterJoin } from "./roster.ts";
import { countInstance, cut, leaveHandshake, tell } from "./connection.ts";
import { capacityRefusal, registrationAllowed } from "./limits.ts";
import { hearJoin, noticeBudget } from "./notices.ts";
import { errorFrame, logRepeated, RATE_WINDOW_MS, type RelayState, reasonOf } from "./state.ts";
import { bump, type DisconnectReason } from "./stats.ts";
import type { Connection, ConnectionState, Instance, Session } from "./types.ts";
import { createWindow } from "./window.ts";
import { newResumption, RESUME_CAPABILITY, resumeOn, startResumption } from "./resume.ts";
import { PEER_FAULT, type RejectReason, WIRE_ERRORS } from "../protocol/wire-errors.ts";

/** Only these capabilities mean anything; others are dropped, so a registration cannot park megabytes in them. */
export const KNOWN_CAPABILITIES: readonly string[] = ["presence", RESUME_CAPABILITY];
const MAX_CAPABILITIES = 8;
const MAX_CAPABILITY_CHARS = 32;

/** At most a few short known entries: a registration once parked 1 MiB of capabilities per instance. */
function _boundedCapabilities(offered: readonly string[]): Set<string> {
  const kept = new Set<string>();
  for (let i = 0; i < offered.length && i < MAX_CAPABILITIES; i++) {
    const c = offered[i]!;
    if (c.length <= MAX_CAPABILITY_CHARS && KNOWN_CAPABILITIES.includes(c)) kept.add(c);
  }
  return kept;
}

/** One Error, then close: before registration a connection gets nothing more. */
export function reject(
  s: RelayState,
  conn: Connection,
  message: string,
  why: RejectReason,
  reason: DisconnectReason = "rejected",
): void {
  bump(s.stats.registrationsRejected, why);
  if (PEER_FAULT[why]) s.options.onRegistrationFailed?.(conn.peer.address, why);
  // A health probe (an empty frame) is routine; a flood of refusals from one address is one line a minute.
  if (why === "empty")
    logRepeated(s, "debug", "probe", conn, `Empty frame from ${conn.peer.address} before registration (health check)`, {
      ip: conn.peer.address,
    });
  else {
    logRepeated(
      s,
      "warn",
      "registration_rejected",
      conn,
      `Registration from ${conn.peer.address} rejected: ${message}`,
      {
        ip: conn.peer.address,
        reason: why,
      },
    );
  }
  conn.peer.send(errorFrame(message), false, true);
  cut(s, conn, reason, true);
}

/** The first frame of a connection. */
export function handshake(s: RelayState, conn: Connection, body: Uint8Array, now: number): void | Promise<void> {
  // What `sova-relay health` sends: answered as docs/protocol.md, "Framing" says, then closed like any other refusal.
  if (body.length === 0) {
    s.stats.probes++;
    return reject(s, conn, WIRE_ERRORS.emptyFrame(), "empty");
  }
  let msg: Message;
  try {
    msg = decodeMessage(body);
  } catch (error) {
    s.stats.drops.invalid++;
    if (peekVariant(body) === "RegisterInstance")
      return reject(s, conn, WIRE_ERRORS.invalidMessage(reasonOf(error)), "invalid");
    return reject(s, conn, WIRE_ERRORS.expectedRegister(), "not_register", "protocol");
  }
  bump(s.stats.messagesReceived, msg.type);
  if (msg.type !== "RegisterInstance")
    return reject(s, conn, WIRE_ERRORS.expectedRegister(), "not_register", "protocol");
  return register(s, conn, msg, now);
}

/** What an instance record is made from: a registration, or a resumption (which brings its own ID). */
type Registering = Pick<RegisterInstance, "instance_name" | "version" | "capabilities">;

/** The newcomer's record: its ID, its precomputed frame pieces, its rate windows. */
export function instanceRecord(
  s: RelayState,
  conn: Connection,
  msg: Registering,
  session: Session,
  nameKey: NameKey,
  now: number,
  idText: string = crypto.randomUUID(),
): Instance {
  const capabilities = _boundedCapabilities(msg.capabilities);
  // Asked for, and on here: otherwise the member is a plain one and never sees an extension frame.
  if (!resumeOn(s)) capabilities.delete(RESUME_CAPABILITY);
  return newInstance(s, {
    idText,
    name: msg.instance_name,
    nameKey,
    version: msg.version,
    session,
    conn,
    connectedAt: now,
    capabilities,
    prefix: broadcastPrefix(msg.instance_name),
    lastActivity: now,
    messageWindow: s.options.rateLimit > 0 ? createWindow(s.options.rateLimit, RATE_WINDOW_MS) : null,
    byteWindow: s.options.rateLimitBytes ? createWindow(s.options.rateLimitBytes, RATE_WINDOW_MS) : null,
    resume: capabilities.has(RESUME_CAPABILITY) ? newResumption() : null,
    node: null,
  });
}

/** What sets one member apart: this node's own (above) or another node's (remote.ts). */
export type InstanceSeed = Pick<
  Instance,
  | "idText"
  | "name"
  | "nameKey"
  | "version"
  | "session"
  | "conn"
  | "connectedAt"
  | "capabilities"
  | "prefix"
  | "lastActivity"
  | "messageWindow"
  | "byteWindow"
  | "resume"
  | "node"
>;

/**
 * The one place an instance record is made, with the counters every member starts
 * from. Written out field by field (no spread), so every record has one shape.
 */
export function newInstance(s: RelayState, seed: InstanceSeed): Instance {
  const id = parseUuid(seed.idText);
  return {
    id,
    idText: seed.idText,
    name: seed.name,
    nameKey: seed.nameKey,
    version: seed.version,
    session: seed.session,
    conn: seed.conn,
    connectedAt: seed.connectedAt,
    seq: s.nextInstanceSeq++,
    announced: false,
    spoke: false,
    capabilities: seed.capabilities,
    prefix: seed.prefix,
    infoHead: instanceInfoHead({
      id,
      name: seed.name,
      version: seed.version,
      connected_at: systemTimeFromMillis(seed.connectedAt),
    }),
    lastActivity: seed.lastActivity,
    messageWindow: seed.messageWindow,
    byteWindow: seed.byteWindow,
    rateDropped: 0,
    rateErrorAt: -Infinity,
    messagesIn: 0,
    messagesOut: 0,
    rateLimited: 0,
    dropped: 0,
    resume: seed.resume,
    node: seed.node,
  };
}

/** A new, empty session under `id`, in the relay's map (local registrations and other nodes' members). */
export function openSession(s: RelayState, id: string, createdAt: number): Session {
  const session: Session = {
    id,
    instances: [],
    names: new Set(),
    presenceWatchers: 0,
    roster: createRoster(),
    createdAt,
    notices: noticeBudget(createdAt),
    resumers: 0,
    log: null,
    origin: `${id}.${crypto.randomUUID().slice(0, 8)}`,
    seq: 0,
    heads: new Map(),
    turn: null,
  };
  s.sessions.set(id, session);
  return session;
}

/** `claimed`: the cluster granted the name (remote.ts); the checks before it already passed once. */
export function register(
  s: RelayState,
  conn: Connection,
  msg: RegisterInstance,
  now: number,
  claimed = false,
): void | Promise<void> {
  // Before anything in the message is looked at: the answer must not tell a right token from a wrong one.
  const wait = s.options.registrationWait?.(conn.peer.address) ?? 0;
  if (wait > 0) return reject(s, conn, WIRE_ERRORS.coolingDown(wait), "cooldown");
  if (msg.version !== s.options.expectedVersion) {
    return reject(s, conn, WIRE_ERRORS.versionMismatch(s.options.expectedVersion, msg.version), "version");
  }
  const key = s.access.admit(msg.session_token);
  if (key === null) return reject(s, conn, WIRE_ERRORS.invalidToken(), "token");
  let session = s.sessions.get(key.id);
  const full = capacityRefusal(s, conn, session);
  if (full !== null) return reject(s, conn, full.message, full.why);
  const name = msg.instance_name;
  const checked = checkInstanceName(name);
  if (!checked.ok) return reject(s, conn, WIRE_ERRORS.invalidName(), "name");
  if (session?.names.has(checked.key) && !claimed) return reject(s, conn, WIRE_ERRORS.nameTaken(name), "name_taken");
  if (!claimed && !registrationAllowed(s, conn, now))
    return reject(s, conn, WIRE_ERRORS.tooManyRegistrations(), "registration_rate");
  if (!session) {
    session = openSession(s, key.id, now);
    s.log.debug("session_created", `Session ${key.id} created`, { session: key.id });
  }
  if (s.options.link && !claimed) return _claimName(s, conn, msg, session, checked.key);
  _join(s, conn, msg, session, checked.key, now);
}

/** Past every check: the newcomer gets its record and seat, its welcome, and the members hear of it. */
function _join(
  s: RelayState,
  conn: Connection,
  msg: RegisterInstance,
  session: Session,
  nameKey: NameKey,
  now: number,
): void {
  const inst = instanceRecord(s, conn, msg, session, nameKey, now);
  const others = session.instances;
  const entries = rosterEntries(session.roster, others);
  const head = registrationResponseHead(`Registered as ${inst.name}`, inst.id, others.length, entries.length);
  _seat(s, conn, session, others, inst, nameKey);
  const replayed = _welcome(s, conn, inst, head, entries, now);
  logRepeated(
    s,
    "info",
    "registered",
    conn,
    `Instance '${inst.name}' registered with ID ${inst.idText}` +
      `${replayed > 0 ? `; sent ${replayed} updates of session history` : ""}`,
    {
      ip: conn.peer.address,
      instance: inst.name,
      id: inst.idText,
      version: msg.version,
      session: session.id,
      history: replayed,
    },
    s.memberLines,
  );
  // Counted, so a crowd joining a session where nobody asked for presence costs no scan.
  const watchers = hearJoin(s, session, inst, others);
  if (watchers.length > 0)
    tell(s, watchers, encodeFrame({ type: "InstanceConnected", instance_id: inst.id, instance_name: inst.name }));
  if (inst.capabilities.has("presence")) session.presenceWatchers++;
  s.options.link?.joined(inst);
}

/** The newcomer into the session's list, roster and names, and its connection out of the handshake state. */
function _seat(
  s: RelayState,
  conn: Connection,
  session: Session,
  others: readonly Instance[],
  inst: Instance,
  nameKey: NameKey,
): void {
  session.instances = [...others, inst];
  rosterJoin(session.roster, others, session.instances, inst);
  session.names.add(nameKey);
  leaveHandshake(s, conn);
  conn.state = "registered";
  conn.instance = inst;
  conn.peer.setFrameLimit(s.options.maxMessageSize);
  s.instanceCount++;
  countInstance(s, inst);
  s.stats.registrationsAccepted++;
}

/** The RegistrationResponse, the roster and the session's history; returns how many history frames went out. */
function _welcome(
  s: RelayState,
  conn: Connection,
  inst: Instance,
  head: Uint8Array,
  entries: Uint8Array,
  now: number,
): number {
  // Queued in front (outside the slow-consumer bound and the relay-wide budget: the
  // list is the roster's own bytes, shared with every other newcomer still waiting for
  // theirs, and history frames are history's), so a crowd joining costs O(n) memory.
  // A newcomer that does not take them within the replay timeout is cut.
  conn.peer.send(head, true);
  if (entries.length > 0) conn.peer.send(entries, true);
  // History right after the response and before any live frame: this runs to the
  // end before the next frame is read, so nothing can fall between the two.
  const replay = s.history?.enabled ? s.history.replay(inst.session.id, now) : [];
  for (const frame of replay) conn.peer.send(frame, true);
  if (inst.resume) startResumption(s, conn, inst);
  conn.lastSent = now;
  conn.replayDeadline = now + s.o.replayTimeoutMs;
  conn.replayMark = conn.peer.frontBytes;
  inst.messagesOut += replay.length;
  return replay.length;
}

/**
 * The name is held here at once (a local duplicate is refused synchronously) and claimed across the cluster; the
 * promise settles once the registration is answered, so the caller can handle the frames held meanwhile.
 */
function _claimName(
  s: RelayState,
  conn: Connection,
  msg: RegisterInstance,
  session: Session,
  nameKey: NameKey,
): Promise<void> {
  const link = s.options.link!;
  session.names.add(nameKey);
  conn.state = "registering";
  return link.claim(session.id, nameKey).then((result) => {
    session.names.delete(nameKey);
    if (conn.state !== "registering" || s.shuttingDown) {
      link.release(session.id, nameKey);
      if (conn.state === "registering") cut(s, conn, "shutdown", true);
    } else {
      conn.state = "handshake";
      if (result === "taken") reject(s, conn, WIRE_ERRORS.nameTaken(msg.instance_name), "name_taken");
      else register(s, conn, msg, s.clock.now(), true);
      if (result === "ok" && (conn.state as ConnectionState) !== "registered") link.release(session.id, nameKey);
    }
    if (session.instances.length === 0 && s.sessions.get(session.id) === session) s.sessions.delete(session.id);
  });
}
