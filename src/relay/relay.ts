/**
 * The relay itself: one in-process map of sessions and instances, and what
 * happens to each frame (PROTOCOL.md, "Connection flow" and "Limits"). It never
 * touches a socket: a connection is a `Peer` it can send to and close, so all of
 * this runs in unit tests as it runs behind Bun.listen.
 */
import type { LogEvent, LogFields, Logger } from "../log.ts";
import {
  broadcastPrefix,
  decodeMessage,
  encodeBroadcastFrame,
  encodeFrame,
  instanceInfoHead,
  peekVariant,
  registrationResponseHead,
  systemTimeFromMillis,
  uuidFromString,
  type Message,
  type RegisterInstance,
  type StateUpdate,
  type Uuid,
} from "../protocol/messages.ts";
import { addressGroup } from "../net/cidr.ts";
import { createAccess } from "./access.ts";
import type { History } from "./history.ts";
import type { ClusterLink, RemoteMember, RemoteMembers } from "./link.ts";
import { checkInstanceName } from "./names.ts";
import { createRepeats, reportRepeats, type Repeats } from "./repeats.ts";
import { createRoster, rosterEntries, rosterJoin, type Roster } from "./roster.ts";
import { bump, createStats, observe, type DisconnectReason, type RelayStats } from "./stats.ts";
import { createWindow, type SlidingWindow } from "./window.ts";
import { PEER_FAULT, WIRE_ERRORS, type RejectReason } from "./wire-errors.ts";

export const RATE_WINDOW_MS = 60_000;
/** Only these capabilities mean anything; others are dropped, so a registration cannot park megabytes in them. */
export const KNOWN_CAPABILITIES: readonly string[] = ["presence"];
const MAX_CAPABILITIES = 8;
const MAX_CAPABILITY_CHARS = 32;

export interface Clock {
  /** Wall time in ms (timestamps on the wire, windows, deadlines). */
  now(): number;
  /** Monotonic ms for latency figures. */
  monotonic(): number;
}

const SYSTEM_CLOCK: Clock = { now: Date.now, monotonic: () => performance.now() };

export interface RelayOptions {
  expectedVersion: string;
  maxInstances: number;
  /** Messages per instance per 60 s window; 0 turns the limit off. */
  rateLimit: number;
  /** Bytes per instance per 60 s window; 0 turns the limit off. */
  rateLimitBytes?: number;
  /** Session history replayed to newcomers (off when absent or disabled). */
  history?: History;
  /** Told of registrations that failed through the peer's fault (the guard's cool-down counts them). */
  onRegistrationFailed?: (address: string, why: string) => void;
  /** Milliseconds before registrations from this address are heard again (the guard's cool-down); 0 or absent: now. */
  registrationWait?: (address: string) => number;
  maxMessageSize: number;
  tokens: readonly string[];
  /** Keys session ids (access.ts); absent: a fresh one, so ids change at every start. */
  sessionSecret?: Uint8Array;
  handshakeTimeoutMs: number;
  /** 0: silence never ends a connection (Sova instances never ping). */
  idleTimeoutMs: number;
  /** Largest frame before registration (a RegisterInstance is a few hundred bytes). */
  handshakeMaxBytes?: number;
  /** Connections still handshaking, relay-wide and per address (IPv6: per /64); past either, new ones are closed at once. */
  maxHandshakes?: number;
  maxHandshakesPerAddress?: number;
  /** Successful registrations per address (IPv6: per /64) in any 60 s: join/leave churn makes every member hear a notice per cycle. */
  maxRegistrationsPerAddress?: number;
  /** A registered instance sent nothing for this long gets a Pong (0: off). See "Sova client compatibility" in the README. */
  nudgeIntervalMs?: number;
  /** A newcomer that has not taken its RegistrationResponse and history within this is cut. */
  replayTimeoutMs?: number;
  clock?: Clock;
  /** Other relays sharing the sessions (--cluster); absent: this relay alone. */
  link?: ClusterLink;
}

/** One connection as the relay sees it. */
export interface Peer {
  readonly address: string;
  readonly port: number;
  /** Unsent bytes held for this peer. */
  readonly pendingBytes: number;
  /** Bytes of the registration response and history replay not yet taken by the peer. */
  readonly frontBytes: number;
  /** Queue a frame; false when the peer's unsent bytes would pass the bound. `front`: registration response and history, always queued first. */
  send(frame: Uint8Array, front?: boolean): boolean;
  /** Send what is queued, then close; the transport bounds how long a peer that does not read can hold it open. */
  close(): void;
  /** Drop what has not started to go out, send `last`, then close (bounded in time like `close`). */
  closeWith(last: Uint8Array): void;
  /** Close now and discard what is queued. */
  terminate(): void;
  /** Frames past this many bytes are refused (raised once the peer registers). */
  setFrameLimit(bytes: number): void;
}

/** "registering": waiting for the cluster's name claim; "remote": stands for another node's members, never sent to. */
export type ConnectionState = "handshake" | "registering" | "registered" | "closed" | "remote";

export interface Connection {
  readonly id: number;
  readonly peer: Peer;
  readonly openedAt: number;
  /** The address's group for per-address limits (IPv6 by /64). */
  readonly group: string;
  lastSeen: number;
  /** When a frame was last queued for this peer (nudges). */
  lastSent: number;
  /** Set while the registration response and history are on their way. */
  replayDeadline: number;
  state: ConnectionState;
  instance: Instance | null;
  /** Frames read while "registering", handled in order once it ends. */
  held?: Uint8Array[];
}

export interface Instance {
  readonly id: Uuid;
  readonly idText: string;
  readonly name: string;
  /** What uniqueness in a session compares: NFC-normalised and trimmed. */
  readonly nameKey: string;
  readonly version: string;
  readonly session: Session;
  readonly conn: Connection;
  readonly connectedAt: number;
  readonly capabilities: ReadonlySet<string>;
  /** The StateBroadcast bytes that depend only on this sender. */
  readonly prefix: Uint8Array;
  /** This instance's InstanceInfo bytes up to last_activity, for others' RegistrationResponse. */
  readonly infoHead: Uint8Array;
  lastActivity: number;
  readonly messageWindow: SlidingWindow | null;
  readonly byteWindow: SlidingWindow | null;
  /** Messages dropped since the rate-limit Error was sent; the next Error waits a minute. */
  rateDropped: number;
  rateErrorAt: number;
  messagesIn: number;
  messagesOut: number;
  rateLimited: number;
  dropped: number;
}

export interface Session {
  readonly id: string;
  /** Replaced, never mutated, on join and leave: a broadcast loop can iterate it while peers leave. */
  instances: readonly Instance[];
  /** Names in use, so a join checks uniqueness without scanning everyone. */
  names: Set<string>;
  /** Members that asked for presence notices; a join without any skips the scan for them. */
  presenceWatchers: number;
  /** The encoded InstanceInfo list newcomers are sent. */
  roster: Roster;
  createdAt: number;
}

export interface Relay {
  readonly options: RelayOptions;
  readonly stats: RelayStats;
  readonly sessions: ReadonlyMap<string, Session>;
  readonly connections: ReadonlySet<Connection>;
  readonly instanceCount: number;
  readonly shuttingDown: boolean;
  open(peer: Peer): Connection;
  receive(conn: Connection, body: Uint8Array): void;
  oversized(conn: Connection, length: number): void;
  /** The socket is gone. */
  closed(conn: Connection, reason: DisconnectReason): void;
  /** End a connection for the transport's reasons (memory pressure): counted, logged, last word sent. */
  cut(conn: Connection, reason: DisconnectReason): void;
  /** Handshake, idle and replay deadlines, log summaries; call about every quarter second. */
  tick(now?: number): void;
  /** Pongs for registered instances sent nothing for the nudge interval; call a few times per interval. */
  nudge(now?: number): void;
  /** The transport saw a lone frame header: answer it so the peer's kernel sends the body now. */
  answerLoneHeader(conn: Connection): void;
  /** Connections that have not registered yet. */
  readonly handshaking: number;
  /** Stop relaying new frames; what is queued still goes out. */
  beginShutdown(): void;
  /** Close every connection after its queue is sent; no one is told of the others leaving. */
  closeAll(): void;
  /** Calls in from the cluster (src/relay/link.ts). */
  readonly remote: RemoteMembers;
}

const REASON_TEXT: Record<DisconnectReason, string> = {
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
};

const DEFAULTS = {
  handshakeMaxBytes: 4096,
  maxHandshakes: 128,
  maxHandshakesPerAddress: 8,
  maxRegistrationsPerAddress: 60,
  nudgeIntervalMs: 0,
  replayTimeoutMs: 30_000,
};

function sameId(a: Uuid, b: Uuid): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function errorFrame(message: string): Uint8Array {
  return encodeFrame({ type: "Error", message });
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** At most a few short known entries: a registration once parked 1 MiB of capabilities per instance. */
function boundedCapabilities(offered: readonly string[]): Set<string> {
  const kept = new Set<string>();
  for (let i = 0; i < offered.length && i < MAX_CAPABILITIES; i++) {
    const c = offered[i]!;
    if (c.length <= MAX_CAPABILITY_CHARS && KNOWN_CAPABILITIES.includes(c)) kept.add(c);
  }
  return kept;
}

function countUp(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}

export function createRelay(options: RelayOptions, log: Logger): Relay {
  const o = { ...DEFAULTS, ...options };
  const clock = options.clock ?? SYSTEM_CLOCK;
  const stats = createStats();
  const access = createAccess(options.tokens, options.sessionSecret);
  const history = options.history;
  const sessions = new Map<string, Session>();
  const connections = new Set<Connection>();
  const handshakesByGroup = new Map<string, number>();
  const registrationWindows = new Map<string, SlidingWindow>();
  const repeats: Repeats<LogEvent> = createRepeats<LogEvent>();
  const connectionLost = errorFrame(WIRE_ERRORS.connectionLost());
  let handshaking = 0;
  let instanceCount = 0;
  let nextConnId = 1;
  let shuttingDown = false;
  const link = options.link;
  const remoteById = new Map<string, Instance>();

  /** Per-address lines a flood would repeat: the first in a minute now, the rest as a count. */
  function logRepeated(level: "info" | "warn" | "debug", event: LogEvent, conn: Connection, message: string, fields: LogFields): void {
    if (repeats.first(event, conn.group, clock.now(), { ip: conn.peer.address, level })) log[level](event, message, fields);
  }

  function leaveHandshake(conn: Connection): void {
    handshaking--;
    countUp(handshakesByGroup, conn.group, -1);
  }

  function cut(conn: Connection, reason: DisconnectReason, graceful: boolean): void {
    if (conn.state === "closed") return;
    const wasRegistered = conn.state === "registered";
    finish(conn, reason);
    // Today's Sova client marks itself disconnected only on this exact Error; without
    // it, it keeps saying it is connected and piles edits into a dead channel.
    if (wasRegistered) {
      stats.lastWords++;
      conn.peer.closeWith(connectionLost);
    } else if (graceful) conn.peer.close();
    else conn.peer.terminate();
  }

  function sendTo(conn: Connection, frame: Uint8Array): boolean {
    conn.lastSent = clock.now();
    return conn.peer.send(frame);
  }

  /** Deliver one frame; a peer whose queue passes the bound is cut on the spot. */
  function deliver(conn: Connection, frame: Uint8Array): boolean {
    if (sendTo(conn, frame)) return true;
    cutSlowConsumer(conn);
    return false;
  }

  function cutSlowConsumer(conn: Connection, reason: "slow_consumer" | "memory_pressure" | "replay_timeout" = "slow_consumer"): void {
    if (conn.state === "closed") return;
    const inst = conn.instance;
    stats.drops.slow_consumer++;
    if (inst) inst.dropped++;
    log.warn(
      "slow_consumer",
      `${inst ? `Instance '${inst.name}'` : `Connection from ${conn.peer.address}`} cut as a slow consumer: ${conn.peer.pendingBytes} bytes unsent (${REASON_TEXT[reason]})`,
      {
        ip: conn.peer.address,
        instance: inst?.name,
        session: inst?.session.id,
        pending_bytes: conn.peer.pendingBytes,
        reason,
      },
    );
    cut(conn, reason, false);
  }

  function finish(conn: Connection, reason: DisconnectReason): void {
    const inst = conn.instance;
    const wasRegistered = conn.state === "registered";
    // A connection waiting for the cluster's name claim still holds its handshake slot.
    if (conn.state === "handshake" || conn.state === "registering") leaveHandshake(conn);
    conn.state = "closed";
    connections.delete(conn);
    stats.disconnects[reason]++;
    if (!wasRegistered || !inst) {
      logRepeated("debug", "connection_closed", conn, `Connection from ${conn.peer.address}:${conn.peer.port} closed before registering (${REASON_TEXT[reason]})`, {
        ip: conn.peer.address,
        reason,
      });
      return;
    }
    const session = inst.session;
    session.instances = session.instances.filter((i) => i !== inst);
    session.names.delete(inst.nameKey);
    if (inst.capabilities.has("presence")) session.presenceWatchers--;
    instanceCount--;
    link?.left(inst);
    if (session.instances.length === 0) {
      sessions.delete(session.id);
      log.debug("session_emptied", `Session ${session.id} is empty`, { session: session.id });
    }
    log.info("disconnected", `Instance '${inst.name}' disconnected: ${REASON_TEXT[reason]}`, {
      ip: conn.peer.address,
      instance: inst.name,
      id: inst.idText,
      session: session.id,
      reason,
    });
    if (shuttingDown && reason === "shutdown") return;
    const notice = encodeFrame({ type: "InstanceDisconnected", instance_id: inst.id, instance_name: inst.name });
    for (const other of session.instances) if (other.conn.state === "registered") deliver(other.conn, notice);
  }

  /** One Error, then close: before registration a connection gets nothing more. */
  function reject(conn: Connection, message: string, why: RejectReason, reason: DisconnectReason = "rejected"): void {
    bump(stats.registrationsRejected, why);
    if (PEER_FAULT[why]) options.onRegistrationFailed?.(conn.peer.address, why);
    // A health probe (an empty frame) is routine; a flood of refusals from one address is one line a minute.
    if (why === "empty") logRepeated("debug", "probe", conn, `Empty frame from ${conn.peer.address} before registration (health check)`, { ip: conn.peer.address });
    else {
      logRepeated("warn", "registration_rejected", conn, `Registration from ${conn.peer.address} rejected: ${message}`, {
        ip: conn.peer.address,
        reason: why,
      });
    }
    conn.peer.send(errorFrame(message));
    cut(conn, reason, true);
  }

  function registrationAllowed(conn: Connection, now: number): boolean {
    let window = registrationWindows.get(conn.group);
    if (window === undefined) {
      window = createWindow(o.maxRegistrationsPerAddress, RATE_WINDOW_MS);
      registrationWindows.set(conn.group, window);
    }
    if (!window.fits(now, 1)) return false;
    window.add(1);
    return true;
  }

  function register(conn: Connection, msg: RegisterInstance, now: number, claimed = false): void {
    // Before anything in the message is looked at: the answer must not tell a right token from a wrong one.
    const wait = options.registrationWait?.(conn.peer.address) ?? 0;
    if (wait > 0) return reject(conn, WIRE_ERRORS.coolingDown(wait), "cooldown");
    if (msg.version !== options.expectedVersion) {
      return reject(conn, WIRE_ERRORS.versionMismatch(options.expectedVersion, msg.version), "version");
    }
    const key = access.admit(msg.session_token);
    if (key === null) return reject(conn, WIRE_ERRORS.invalidToken(), "token");
    if (instanceCount >= options.maxInstances) return reject(conn, WIRE_ERRORS.maxInstances(options.maxInstances), "capacity");
    const name = msg.instance_name;
    const checked = checkInstanceName(name);
    if (!checked.ok) return reject(conn, WIRE_ERRORS.invalidName(), "name");
    let session = sessions.get(key.id);
    if (session?.names.has(checked.key) && !claimed) return reject(conn, WIRE_ERRORS.nameTaken(name), "name_taken");
    if (!claimed && !registrationAllowed(conn, now)) return reject(conn, WIRE_ERRORS.tooManyRegistrations(), "registration_rate");
    if (!session) {
      session = { id: key.id, instances: [], names: new Set(), presenceWatchers: 0, roster: createRoster(), createdAt: now };
      sessions.set(key.id, session);
      log.debug("session_created", `Session ${key.id} created`, { session: key.id });
    }
    if (link && !claimed) return claimName(conn, msg, session, checked.key);
    const idText = crypto.randomUUID();
    const id = uuidFromString(idText);
    const inst: Instance = {
      id,
      idText,
      name,
      nameKey: checked.key,
      version: msg.version,
      session,
      conn,
      connectedAt: now,
      capabilities: boundedCapabilities(msg.capabilities),
      prefix: broadcastPrefix(name),
      infoHead: instanceInfoHead({ id, name, version: msg.version, connected_at: systemTimeFromMillis(now) }),
      lastActivity: now,
      messageWindow: options.rateLimit > 0 ? createWindow(options.rateLimit, RATE_WINDOW_MS) : null,
      byteWindow: options.rateLimitBytes ? createWindow(options.rateLimitBytes, RATE_WINDOW_MS) : null,
      rateDropped: 0,
      rateErrorAt: -Infinity,
      messagesIn: 0,
      messagesOut: 0,
      rateLimited: 0,
      dropped: 0,
    };
    const others = session.instances;
    const entries = rosterEntries(session.roster, others);
    const head = registrationResponseHead(`Registered as ${name}`, inst.id, others.length, entries.length);
    session.instances = [...others, inst];
    rosterJoin(session.roster, others, session.instances, inst);
    session.names.add(checked.key);
    leaveHandshake(conn);
    conn.state = "registered";
    conn.instance = inst;
    conn.peer.setFrameLimit(options.maxMessageSize);
    instanceCount++;
    stats.registrationsAccepted++;
    // Queued in front (outside the slow-consumer bound and the relay-wide budget: the
    // list is the roster's own bytes, shared with every other newcomer still waiting for
    // theirs, and history frames are history's), so a crowd joining costs O(n) memory.
    // A newcomer that does not take them within the replay timeout is cut.
    conn.peer.send(head, true);
    if (entries.length > 0) conn.peer.send(entries, true);
    // History right after the response and before any live frame: this runs to the
    // end before the next frame is read, so nothing can fall between the two.
    const replay = history?.enabled ? history.replay(session.id, now) : [];
    for (const frame of replay) conn.peer.send(frame, true);
    conn.lastSent = now;
    conn.replayDeadline = now + o.replayTimeoutMs;
    inst.messagesOut += replay.length;
    log.info("registered", `Instance '${name}' registered with ID ${idText}${replay.length > 0 ? `; sent ${replay.length} updates of session history` : ""}`, {
      ip: conn.peer.address,
      instance: name,
      id: idText,
      version: msg.version,
      session: session.id,
      history: replay.length,
    });
    // Counted, so a crowd joining a session where nobody asked for presence costs no scan.
    if (session.presenceWatchers > 0) {
      const notice = encodeFrame({ type: "InstanceConnected", instance_id: inst.id, instance_name: name });
      for (const other of others) if (other.capabilities.has("presence") && other.conn.state === "registered") deliver(other.conn, notice);
    }
    if (inst.capabilities.has("presence")) session.presenceWatchers++;
    link?.joined(inst);
  }

  function handshake(conn: Connection, body: Uint8Array, now: number): void {
    // What `sova-relay health` sends: answered as PROTOCOL.md says, then closed like any other refusal.
    if (body.length === 0) {
      stats.probes++;
      return reject(conn, WIRE_ERRORS.emptyFrame(), "empty");
    }
    let msg: Message;
    try {
      msg = decodeMessage(body);
    } catch (error) {
      stats.drops.invalid++;
      if (peekVariant(body) === "RegisterInstance") return reject(conn, WIRE_ERRORS.invalidMessage(reasonOf(error)), "invalid");
      return reject(conn, WIRE_ERRORS.expectedRegister(), "not_register", "protocol");
    }
    bump(stats.messagesReceived, msg.type);
    if (msg.type !== "RegisterInstance") return reject(conn, WIRE_ERRORS.expectedRegister(), "not_register", "protocol");
    register(conn, msg, now);
  }

  /**
   * Messages and bytes per instance over any 60 s span; the first drop gets the
   * Error, and the next Error waits at least a minute, however the sender keeps on.
   */
  function withinRate(inst: Instance, now: number, bytes: number): boolean {
    const messages = inst.messageWindow;
    const volume = inst.byteWindow;
    const countOk = messages === null || messages.fits(now, 1);
    const bytesOk = volume === null || volume.fits(now, bytes);
    if (countOk && bytesOk) {
      messages?.add(1);
      volume?.add(bytes);
      return true;
    }
    inst.rateLimited++;
    inst.rateDropped++;
    stats.drops.rate_limit++;
    if (now - inst.rateErrorAt >= RATE_WINDOW_MS) {
      const which = countOk ? `${options.rateLimitBytes} bytes` : `${options.rateLimit} messages`;
      const earlier = inst.rateDropped - 1;
      log.warn(
        "rate_limited",
        `Instance '${inst.name}' exceeded the rate limit (${which} per minute); dropping until it is back under${earlier > 0 ? ` (${earlier} dropped since the last notice)` : ""}`,
        {
          ip: inst.conn.peer.address,
          instance: inst.name,
          session: inst.session.id,
          reason: "rate_limit",
          dropped: earlier,
        },
      );
      inst.rateErrorAt = now;
      inst.rateDropped = 0;
      deliver(inst.conn, errorFrame(WIRE_ERRORS.rateLimit(inst.name)));
    }
    return false;
  }

  function invalid(inst: Instance, why: string): void {
    stats.drops.invalid++;
    inst.dropped++;
    bump(stats.messagesReceived, "invalid");
    logRepeated("warn", "invalid_message", inst.conn, `Invalid message from instance '${inst.name}': ${why}`, {
      ip: inst.conn.peer.address,
      instance: inst.name,
      session: inst.session.id,
      reason: why,
    });
    deliver(inst.conn, errorFrame(WIRE_ERRORS.invalidMessage(why)));
  }

  function relayUpdate(inst: Instance, msg: StateUpdate, now: number, arrived: number): void {
    if (!sameId(msg.source_instance_id, inst.id)) {
      stats.drops.invalid++;
      inst.dropped++;
      logRepeated("warn", "id_mismatch", inst.conn, `Instance '${inst.name}' sent a StateUpdate with another instance's ID`, {
        ip: inst.conn.peer.address,
        instance: inst.name,
        session: inst.session.id,
        reason: "id_mismatch",
      });
      deliver(inst.conn, errorFrame(WIRE_ERRORS.idMismatch()));
      return;
    }
    stats.broadcasts++;
    const peers = inst.session.instances;
    const keep = history?.enabled === true;
    // With a cluster, members on other nodes may have joined before we heard of them: always publish.
    if (peers.length < 2 && !keep && !link) return;
    const frame = encodeBroadcastFrame(inst.prefix, msg.timestamp, msg.update_data);
    if (keep) history.append(inst.session.id, frame, now);
    link?.broadcast(inst, frame);
    let slow: Connection[] | null = null;
    for (let i = 0; i < peers.length; i++) {
      const other = peers[i]!;
      if (other === inst || other.conn.state !== "registered") continue;
      if (other.conn.peer.send(frame)) {
        other.conn.lastSent = now;
        other.messagesOut++;
        stats.deliveries++;
      } else (slow ??= []).push(other.conn);
    }
    observe(stats.relayLatency, (clock.monotonic() - arrived) / 1000);
    // Cut after the loop, so everyone hears this update before hearing who left.
    if (slow !== null) for (const conn of slow) cutSlowConsumer(conn);
  }

  function receive(conn: Connection, body: Uint8Array): void {
    if (conn.state === "closed") return;
    const arrived = clock.monotonic();
    const now = clock.now();
    conn.lastSeen = now;
    if (shuttingDown) {
      stats.drops.shutdown++;
      return;
    }
    if (conn.state === "handshake") return handshake(conn, body, now);
    if (conn.state === "registering") return hold(conn, body);
    const inst = conn.instance!;
    if (!withinRate(inst, now, body.length)) return;
    inst.messagesIn++;
    inst.lastActivity = now;
    if (body.length === 0) return invalid(inst, "empty frame");
    let msg: Message;
    try {
      msg = decodeMessage(body);
    } catch (error) {
      return invalid(inst, reasonOf(error));
    }
    bump(stats.messagesReceived, msg.type);
    switch (msg.type) {
      case "StateUpdate":
        return relayUpdate(inst, msg, now, arrived);
      case "Ping":
        deliver(conn, encodeFrame({ type: "Pong", timestamp: msg.timestamp }));
        return;
      case "Pong":
        return;
      default:
        return invalid(inst, `unexpected ${msg.type} from an instance`);
    }
  }

  function oversized(conn: Connection, length: number): void {
    if (conn.state === "closed") return;
    const now = clock.now();
    conn.lastSeen = now;
    stats.drops.oversized++;
    if (conn.state === "handshake") {
      return reject(conn, WIRE_ERRORS.tooLarge(length, o.handshakeMaxBytes), "oversized", "protocol");
    }
    const inst = conn.instance!;
    inst.dropped++;
    // The skipped bytes crossed the network all the same: they count toward the limits.
    if (!withinRate(inst, now, length)) return;
    logRepeated("warn", "oversized_frame", conn, `Instance '${inst.name}' sent a ${length}-byte frame (max ${options.maxMessageSize}); skipped`, {
      ip: conn.peer.address,
      instance: inst.name,
      session: inst.session.id,
      length,
      reason: "oversized",
    });
    deliver(conn, errorFrame(WIRE_ERRORS.tooLarge(length, options.maxMessageSize)));
  }

  function tick(now = clock.now()): void {
    for (const conn of connections) {
      if (conn.state === "handshake" && now - conn.openedAt >= options.handshakeTimeoutMs) {
        logRepeated("debug", "handshake_timeout", conn, `Connection from ${conn.peer.address} sent no RegisterInstance within ${options.handshakeTimeoutMs / 1000} s; closing`, {
          ip: conn.peer.address,
          reason: "handshake_timeout",
        });
        cut(conn, "handshake_timeout", true);
      } else if (conn.replayDeadline > 0) {
        if (conn.peer.frontBytes === 0) conn.replayDeadline = 0;
        else if (now >= conn.replayDeadline) cutSlowConsumer(conn, "replay_timeout");
      } else if (options.idleTimeoutMs > 0 && now - conn.lastSeen >= options.idleTimeoutMs) {
        cut(conn, "idle_timeout", true);
      }
    }
    reportRepeats(log, repeats.due(now));
    for (const [group, window] of registrationWindows) if (window.fits(now, 0) && window.used === 0) registrationWindows.delete(group);
  }

  /**
   * A frame header that arrived alone is answered at once: today's client writes the
   * header and the body in two writes without TCP_NODELAY, so its kernel holds the
   * body until our ACK, which Linux delays up to 40 ms when we have nothing to send.
   * A Pong carries the ACK back at once.
   */
  function answerLoneHeader(conn: Connection): void {
    if (conn.state !== "registered" || conn.peer.pendingBytes > 0 || o.nudgeIntervalMs <= 0) return;
    stats.nudges++;
    deliver(conn, encodeFrame({ type: "Pong", timestamp: BigInt(clock.now()) }));
  }

  function nudge(now = clock.now()): void {
    if (o.nudgeIntervalMs <= 0 || shuttingDown) return;
    let pong: Uint8Array | null = null;
    for (const conn of connections) {
      // A peer with bytes still queued has a frame on its way: that frame is its nudge.
      if (conn.state !== "registered" || now - conn.lastSent < o.nudgeIntervalMs || conn.peer.pendingBytes > 0) continue;
      pong ??= encodeFrame({ type: "Pong", timestamp: BigInt(now) });
      stats.nudges++;
      deliver(conn, pong);
    }
  }

  // ---- cluster (src/relay/link.ts): only reached when options.link is set ----

  /** Frames an instance sends before its response are kept for after it, within a small bound. */
  const MAX_HELD = 64;
  const overHeld = new WeakSet<Connection>();

  function hold(conn: Connection, body: Uint8Array): void {
    const held = (conn.held ??= []);
    let bytes = body.length;
    for (const b of held) bytes += b.length;
    if (held.length < MAX_HELD && bytes <= options.maxMessageSize) {
      // A copy: the body may be a view of the socket's chunk, reused once this returns.
      held.push(body.slice());
      return;
    }
    stats.drops.invalid++;
    // Once per connection: a peer that keeps sending cannot flood the log.
    if (!overHeld.has(conn)) {
      overHeld.add(conn);
      log.warn("invalid_message", `Connection from ${conn.peer.address} sent more than ${MAX_HELD} frames or ${options.maxMessageSize} bytes before its registration was answered; dropped`, {
        ip: conn.peer.address,
        reason: "before_registered",
      });
    }
  }

  /** The name is held here at once (a local duplicate is refused synchronously) and claimed across the cluster. */
  function claimName(conn: Connection, msg: RegisterInstance, session: Session, nameKey: string): void {
    const name = nameKey;
    session.names.add(name);
    conn.state = "registering";
    void link!.claim(session.id, name).then((result) => {
      session.names.delete(name);
      if (conn.state !== "registering" || shuttingDown) {
        link!.release(session.id, name);
        if (conn.state === "registering") cut(conn, "shutdown", true);
      } else {
        conn.state = "handshake";
        if (result === "taken") reject(conn, WIRE_ERRORS.nameTaken(msg.instance_name), "name_taken");
        else register(conn, msg, Date.now(), true);
        if (result === "ok" && (conn.state as ConnectionState) !== "registered") link!.release(session.id, name);
      }
      if (session.instances.length === 0 && sessions.get(session.id) === session) sessions.delete(session.id);
      const held = conn.held;
      conn.held = undefined;
      if (held && conn.state === "registered") for (const body of held) receive(conn, body);
    });
  }

  function remoteConn(node: string): Connection {
    const peer: Peer = {
      address: `node ${node}`,
      port: 0,
      pendingBytes: 0,
      frontBytes: 0,
      send: () => true,
      close() {},
      closeWith() {},
      terminate() {},
      setFrameLimit() {},
    };
    return { id: 0, peer, openedAt: 0, group: `node ${node}`, lastSeen: 0, lastSent: 0, replayDeadline: 0, state: "remote", instance: null };
  }

  /** What a remote member's name is compared by here: as the local check would have keyed it. */
  function remoteNameKey(name: string): string {
    const checked = checkInstanceName(name);
    return checked.ok ? checked.key : name;
  }

  const remoteConns = new Map<string, Connection>();

  const remote: RemoteMembers = {
    joined(m: RemoteMember) {
      if (remoteById.has(m.id)) return;
      let session = sessions.get(m.session);
      if (!session) {
        session = { id: m.session, instances: [], names: new Set(), presenceWatchers: 0, roster: createRoster(), createdAt: m.connectedAt };
        sessions.set(m.session, session);
      }
      const nameKey = remoteNameKey(m.name);
      if (session.names.has(nameKey)) {
        log.warn("cluster_name_conflict", `Instance name '${m.name}' is in use on this node and on node ${m.node} (claimed while the cluster was unreachable)`, {
          session: m.session,
          instance: m.name,
          node: m.node,
        });
      }
      let conn = remoteConns.get(m.node);
      if (!conn) remoteConns.set(m.node, (conn = remoteConn(m.node)));
      const id = uuidFromString(m.id);
      const inst: Instance = {
        id,
        idText: m.id,
        name: m.name,
        nameKey,
        version: m.version,
        session,
        conn,
        connectedAt: m.connectedAt,
        capabilities: new Set(),
        prefix: new Uint8Array(0),
        infoHead: instanceInfoHead({ id, name: m.name, version: m.version, connected_at: systemTimeFromMillis(m.connectedAt) }),
        lastActivity: m.lastActivity,
        // Rate limits stay on the node that owns the connection.
        messageWindow: null,
        byteWindow: null,
        rateDropped: 0,
        rateErrorAt: 0,
        messagesIn: 0,
        messagesOut: 0,
        rateLimited: 0,
        dropped: 0,
      };
      remoteById.set(m.id, inst);
      const others = session.instances;
      session.instances = [...others, inst];
      rosterJoin(session.roster, others, session.instances, inst);
      session.names.add(nameKey);
      if (session.presenceWatchers > 0) {
        const notice = encodeFrame({ type: "InstanceConnected", instance_id: id, instance_name: m.name });
        for (const o of others) if (o.capabilities.has("presence") && o.conn.state === "registered") deliver(o.conn, notice);
      }
    },
    left(sessionId, idText) {
      const inst = remoteById.get(idText);
      if (!inst) return;
      remoteById.delete(idText);
      const session = inst.session;
      session.instances = session.instances.filter((i) => i !== inst);
      if (!session.instances.some((i) => i.nameKey === inst.nameKey)) session.names.delete(inst.nameKey);
      if (session.instances.length === 0 && sessions.get(sessionId) === session) sessions.delete(sessionId);
      const notice = encodeFrame({ type: "InstanceDisconnected", instance_id: inst.id, instance_name: inst.name });
      for (const other of session.instances) if (other.conn.state === "registered") deliver(other.conn, notice);
    },
    activity(_sessionId, idText, at) {
      const inst = remoteById.get(idText);
      if (inst) inst.lastActivity = at;
    },
    frame(sessionId, frame) {
      if (shuttingDown) return;
      if (history?.enabled) history.append(sessionId, frame, Date.now());
      const session = sessions.get(sessionId);
      if (!session) return;
      const now = clock.now();
      let slow: Connection[] | null = null;
      for (const other of session.instances) {
        if (other.conn.state !== "registered") continue;
        if (other.conn.peer.send(frame)) {
          other.conn.lastSent = now;
          other.messagesOut++;
          stats.deliveries++;
        } else (slow ??= []).push(other.conn);
      }
      if (slow !== null) for (const conn of slow) cutSlowConsumer(conn);
    },
    locals() {
      const out: Instance[] = [];
      for (const conn of connections) if (conn.state === "registered" && conn.instance) out.push(conn.instance);
      return out;
    },
  };

  return {
    remote,
    options,
    stats,
    sessions,
    connections,
    get instanceCount() {
      return instanceCount;
    },
    get handshaking() {
      return handshaking;
    },
    get shuttingDown() {
      return shuttingDown;
    },
    open(peer) {
      const now = clock.now();
      const group = addressGroup(peer.address);
      const conn: Connection = {
        id: nextConnId++,
        peer,
        openedAt: now,
        group,
        lastSeen: now,
        lastSent: now,
        replayDeadline: 0,
        state: "handshake",
        instance: null,
      };
      connections.add(conn);
      handshaking++;
      countUp(handshakesByGroup, group, 1);
      stats.connectionsOpened++;
      peer.setFrameLimit(o.handshakeMaxBytes);
      if ((handshakesByGroup.get(group) ?? 0) > o.maxHandshakesPerAddress) {
        logRepeated("warn", "connection_refused", conn, `Connection from ${peer.address} refused: too many of its connections still handshaking`, {
          ip: peer.address,
          reason: "handshake_limit",
        });
        stats.connectionsRefused++;
        cut(conn, "handshake_limit", false);
        return conn;
      }
      // Relay-wide, the oldest handshake goes, not the newest: an instance registers
      // within a round trip, so whoever has sat the longest without registering is the
      // likeliest stranger, and a player connecting during a flood still gets in.
      if (handshaking > o.maxHandshakes) {
        for (const old of connections) {
          if (old.state !== "handshake") continue;
          logRepeated("warn", "connection_refused", old, `Connection from ${old.peer.address} closed: the relay's handshake slots are full and it waited the longest`, {
            ip: old.peer.address,
            reason: "handshake_limit",
          });
          cut(old, "handshake_limit", false);
          break;
        }
      }
      logRepeated("debug", "connection_accepted", conn, `New connection from ${peer.address}:${peer.port}`, { ip: peer.address });
      return conn;
    },
    receive,
    oversized,
    closed(conn, reason) {
      if (conn.state !== "closed") finish(conn, reason);
    },
    cut(conn, reason) {
      if (reason === "slow_consumer" || reason === "memory_pressure" || reason === "replay_timeout") cutSlowConsumer(conn, reason);
      else cut(conn, reason, true);
    },
    tick,
    nudge,
    answerLoneHeader,
    beginShutdown() {
      shuttingDown = true;
    },
    closeAll() {
      for (const conn of [...connections]) cut(conn, "shutdown", true);
      reportRepeats(log, repeats.drain());
    },
  };
}
