/**
 * The relay itself: one in-process map of sessions and instances, and what
 * happens to each frame (PROTOCOL.md, "Connection flow" and "Limits"). It never
 * touches a socket: a connection is a `Peer` it can send to and close, so all of
 * this runs in unit tests as it runs behind Bun.listen.
 */
import type { Logger } from "../log.ts";
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
import { createAccess } from "./access.ts";
import type { History } from "./history.ts";
import type { ClusterLink, RemoteMember, RemoteMembers } from "./link.ts";
import { isValidInstanceName } from "./names.ts";
import { createRoster, rosterEntries, rosterJoin, type Roster } from "./roster.ts";
import { bump, createStats, observe, type DisconnectReason, type RelayStats } from "./stats.ts";

export const RATE_WINDOW_MS = 60_000;

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
  maxMessageSize: number;
  tokens: readonly string[];
  handshakeTimeoutMs: number;
  /** 0: silence never ends a connection (Sova instances never ping). */
  idleTimeoutMs: number;
  /** Other relays sharing the sessions (--cluster); absent: this relay alone. */
  link?: ClusterLink;
}

/** One connection as the relay sees it. */
export interface Peer {
  readonly address: string;
  readonly port: number;
  /** Unsent bytes held for this peer. */
  readonly pendingBytes: number;
  /** Queue a frame; false when the peer's unsent bytes would pass the bound. `replay`: history, always queued. */
  send(frame: Uint8Array, replay?: boolean): boolean;
  /** Send what is queued, then close. */
  close(): void;
  /** Close now and discard what is queued. */
  terminate(): void;
}

/** "registering": waiting for the cluster's name claim; "remote": stands for another node's members, never sent to. */
export type ConnectionState = "handshake" | "registering" | "registered" | "closed" | "remote";

export interface Connection {
  readonly id: number;
  readonly peer: Peer;
  readonly openedAt: number;
  lastSeen: number;
  state: ConnectionState;
  instance: Instance | null;
  /** Frames read while "registering", handled in order once it ends. */
  held?: Uint8Array[];
}

export interface Instance {
  readonly id: Uuid;
  readonly idText: string;
  readonly name: string;
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
  windowStart: number;
  windowCount: number;
  windowBytes: number;
  windowDropped: number;
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
  /** Handshake and idle deadlines; call about every quarter second. */
  tick(now?: number): void;
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
  idle_timeout: "idle timeout",
  slow_consumer: "slow consumer",
  rejected: "registration rejected",
  protocol: "protocol error",
  shutdown: "relay shutting down",
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

export function createRelay(options: RelayOptions, log: Logger): Relay {
  const stats = createStats();
  const access = createAccess(options.tokens);
  const history = options.history;
  const sessions = new Map<string, Session>();
  const connections = new Set<Connection>();
  let instanceCount = 0;
  let nextConnId = 1;
  let shuttingDown = false;
  const link = options.link;
  const remoteById = new Map<string, Instance>();

  function cut(conn: Connection, reason: DisconnectReason, graceful: boolean): void {
    if (conn.state === "closed") return;
    finish(conn, reason);
    if (graceful) conn.peer.close();
    else conn.peer.terminate();
  }

  /** Deliver one frame; a peer whose queue passes the bound is cut on the spot. */
  function deliver(conn: Connection, frame: Uint8Array): boolean {
    if (conn.peer.send(frame)) return true;
    cutSlowConsumer(conn);
    return false;
  }

  function cutSlowConsumer(conn: Connection): void {
    if (conn.state === "closed") return;
    const inst = conn.instance;
    stats.drops.slow_consumer++;
    if (inst) inst.dropped++;
    log.warn("slow_consumer", `${inst ? `Instance '${inst.name}'` : `Connection from ${conn.peer.address}`} cut as a slow consumer: ${conn.peer.pendingBytes} bytes unsent`, {
      ip: conn.peer.address,
      instance: inst?.name,
      session: inst?.session.id,
      pending_bytes: conn.peer.pendingBytes,
      reason: "slow_consumer",
    });
    cut(conn, "slow_consumer", false);
  }

  function finish(conn: Connection, reason: DisconnectReason): void {
    const inst = conn.instance;
    const wasRegistered = conn.state === "registered";
    conn.state = "closed";
    connections.delete(conn);
    stats.disconnects[reason]++;
    if (!wasRegistered || !inst) {
      log.debug("connection_closed", `Connection from ${conn.peer.address}:${conn.peer.port} closed before registering (${REASON_TEXT[reason]})`, {
        ip: conn.peer.address,
        reason,
      });
      return;
    }
    const session = inst.session;
    session.instances = session.instances.filter((i) => i !== inst);
    session.names.delete(inst.name);
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

  /** Failures that say the peer is guessing or broken, not that the relay is full. */
  const PEER_FAULTS = new Set(["version", "token", "name", "invalid", "not_register"]);

  function reject(conn: Connection, message: string, why: string, reason: DisconnectReason = "rejected"): void {
    bump(stats.registrationsRejected, why);
    if (PEER_FAULTS.has(why)) options.onRegistrationFailed?.(conn.peer.address, why);
    log.warn("registration_rejected", `Registration from ${conn.peer.address} rejected: ${message}`, {
      ip: conn.peer.address,
      reason: why,
    });
    conn.peer.send(errorFrame(message));
    cut(conn, reason, true);
  }

  function register(conn: Connection, msg: RegisterInstance, now: number, claimed = false): void {
    if (msg.version !== options.expectedVersion) {
      return reject(conn, `Version mismatch: expected ${options.expectedVersion}, got ${msg.version}`, "version");
    }
    const key = access.admit(msg.session_token);
    if (key === null) return reject(conn, "Invalid session token", "token");
    if (instanceCount >= options.maxInstances) return reject(conn, `Maximum instances (${options.maxInstances}) reached`, "capacity");
    const name = msg.instance_name;
    if (!isValidInstanceName(name)) return reject(conn, "Invalid instance name", "name");
    let session = sessions.get(key.id);
    if (session?.names.has(name) && !claimed) return reject(conn, `Instance name '${name}' already in use`, "name_taken");
    if (!session) {
      session = { id: key.id, instances: [], names: new Set(), presenceWatchers: 0, roster: createRoster(), createdAt: now };
      sessions.set(key.id, session);
      log.debug("session_created", `Session ${key.id} created`, { session: key.id });
    }
    if (link && !claimed) return claimName(conn, msg, session);
    const idText = crypto.randomUUID();
    const id = uuidFromString(idText);
    const inst: Instance = {
      id,
      idText,
      name,
      version: msg.version,
      session,
      conn,
      connectedAt: now,
      capabilities: new Set(msg.capabilities),
      prefix: broadcastPrefix(name),
      infoHead: instanceInfoHead({ id, name, version: msg.version, connected_at: systemTimeFromMillis(now) }),
      lastActivity: now,
      windowStart: now,
      windowCount: 0,
      windowBytes: 0,
      windowDropped: 0,
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
    session.names.add(name);
    conn.state = "registered";
    conn.instance = inst;
    instanceCount++;
    stats.registrationsAccepted++;
    // Queued like history (always, at the front, outside the slow-consumer bound until
    // sent); the list part is the roster's own bytes, shared with every other newcomer
    // still waiting for theirs, so a crowd joining costs O(n) memory, not O(n^2).
    conn.peer.send(head, true);
    if (entries.length > 0) conn.peer.send(entries, true);
    // History right after the response and before any live frame: this runs to the
    // end before the next frame is read, so nothing can fall between the two.
    const replay = history?.enabled ? history.replay(session.id, now) : [];
    for (const frame of replay) conn.peer.send(frame, true);
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
      for (const o of others) if (o.capabilities.has("presence") && o.conn.state === "registered") deliver(o.conn, notice);
    }
    if (inst.capabilities.has("presence")) session.presenceWatchers++;
    link?.joined(inst);
  }

  function handshake(conn: Connection, body: Uint8Array, now: number): void {
    if (body.length === 0) {
      // What `sova-relay health` sends: answered as PROTOCOL.md says, logged quietly.
      stats.probes++;
      log.debug("probe", `Empty frame from ${conn.peer.address} before registration (health check)`, { ip: conn.peer.address });
      deliver(conn, errorFrame("Invalid message: empty frame"));
      return;
    }
    let msg: Message;
    try {
      msg = decodeMessage(body);
    } catch (error) {
      stats.drops.invalid++;
      if (peekVariant(body) === "RegisterInstance") return reject(conn, `Invalid message: ${reasonOf(error)}`, "invalid");
      return reject(conn, "Expected RegisterInstance message", "not_register", "protocol");
    }
    bump(stats.messagesReceived, msg.type);
    if (msg.type !== "RegisterInstance") return reject(conn, "Expected RegisterInstance message", "not_register", "protocol");
    register(conn, msg, now);
  }

  /**
   * Fixed 60 s window per instance, counting messages and bytes; the first drop
   * of a window, whichever limit caused it, gets the one Error.
   */
  function withinRate(inst: Instance, now: number, bytes: number): boolean {
    if (options.rateLimit === 0 && !options.rateLimitBytes) return true;
    if (now - inst.windowStart >= RATE_WINDOW_MS) {
      if (inst.windowDropped > 0) {
        log.info("rate_limit_window", `Instance '${inst.name}' had ${inst.windowDropped} messages dropped by the rate limit in the last window`, {
          instance: inst.name,
          session: inst.session.id,
          dropped: inst.windowDropped,
        });
      }
      inst.windowStart = now;
      inst.windowCount = 0;
      inst.windowBytes = 0;
      inst.windowDropped = 0;
    }
    const countOk = options.rateLimit === 0 || inst.windowCount < options.rateLimit;
    const bytesOk = !options.rateLimitBytes || inst.windowBytes + bytes <= options.rateLimitBytes;
    if (countOk && bytesOk) {
      inst.windowCount++;
      inst.windowBytes += bytes;
      return true;
    }
    inst.windowDropped++;
    inst.rateLimited++;
    stats.drops.rate_limit++;
    if (inst.windowDropped === 1) {
      const which = countOk ? `${options.rateLimitBytes} bytes` : `${options.rateLimit} messages`;
      log.warn("rate_limited", `Instance '${inst.name}' exceeded the rate limit (${which} per minute); dropping until the window resets`, {
        ip: inst.conn.peer.address,
        instance: inst.name,
        session: inst.session.id,
        reason: "rate_limit",
      });
      deliver(inst.conn, errorFrame(`Rate limit exceeded for instance ${inst.name}`));
    }
    return false;
  }

  function invalid(inst: Instance, why: string): void {
    stats.drops.invalid++;
    inst.dropped++;
    bump(stats.messagesReceived, "invalid");
    log.warn("invalid_message", `Invalid message from instance '${inst.name}': ${why}`, {
      ip: inst.conn.peer.address,
      instance: inst.name,
      session: inst.session.id,
      reason: why,
    });
    deliver(inst.conn, errorFrame(`Invalid message: ${why}`));
  }

  function relayUpdate(inst: Instance, msg: StateUpdate, now: number, arrived: number): void {
    if (!sameId(msg.source_instance_id, inst.id)) {
      stats.drops.invalid++;
      inst.dropped++;
      log.warn("id_mismatch", `Instance '${inst.name}' sent a StateUpdate with another instance's ID`, {
        ip: inst.conn.peer.address,
        instance: inst.name,
        session: inst.session.id,
        reason: "id_mismatch",
      });
      deliver(inst.conn, errorFrame("Instance ID mismatch"));
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
        other.messagesOut++;
        stats.deliveries++;
      } else (slow ??= []).push(other.conn);
    }
    observe(stats.relayLatency, (performance.now() - arrived) / 1000);
    // Cut after the loop, so everyone hears this update before hearing who left.
    if (slow !== null) for (const conn of slow) cutSlowConsumer(conn);
  }

  function receive(conn: Connection, body: Uint8Array): void {
    if (conn.state === "closed") return;
    const arrived = performance.now();
    const now = Date.now();
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
    conn.lastSeen = Date.now();
    stats.drops.oversized++;
    const inst = conn.instance;
    if (inst) inst.dropped++;
    log.warn("oversized_frame", `${inst ? `Instance '${inst.name}'` : `Connection from ${conn.peer.address}`} sent a ${length}-byte frame (max ${options.maxMessageSize}); skipped`, {
      ip: conn.peer.address,
      instance: inst?.name,
      session: inst?.session.id,
      length,
      reason: "oversized",
    });
    deliver(conn, errorFrame(`Message too large: ${length} bytes (max: ${options.maxMessageSize})`));
  }

  function tick(now = Date.now()): void {
    for (const conn of connections) {
      if (conn.state === "handshake" && now - conn.openedAt >= options.handshakeTimeoutMs) {
        log.info("handshake_timeout", `Connection from ${conn.peer.address} sent no RegisterInstance within ${options.handshakeTimeoutMs / 1000} s; closing`, {
          ip: conn.peer.address,
          reason: "handshake_timeout",
        });
        cut(conn, "handshake_timeout", true);
      } else if (options.idleTimeoutMs > 0 && now - conn.lastSeen >= options.idleTimeoutMs) {
        cut(conn, "idle_timeout", true);
      }
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
  function claimName(conn: Connection, msg: RegisterInstance, session: Session): void {
    const name = msg.instance_name;
    session.names.add(name);
    conn.state = "registering";
    void link!.claim(session.id, name).then((result) => {
      session.names.delete(name);
      if (conn.state !== "registering" || shuttingDown) {
        link!.release(session.id, name);
        if (conn.state === "registering") cut(conn, "shutdown", true);
      } else {
        conn.state = "handshake";
        if (result === "taken") reject(conn, `Instance name '${name}' already in use`, "name_taken");
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
    const peer: Peer = { address: `node ${node}`, port: 0, pendingBytes: 0, send: () => true, close() {}, terminate() {} };
    return { id: 0, peer, openedAt: 0, lastSeen: 0, state: "remote", instance: null };
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
      if (session.names.has(m.name)) {
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
        version: m.version,
        session,
        conn,
        connectedAt: m.connectedAt,
        capabilities: new Set(),
        prefix: new Uint8Array(0),
        infoHead: instanceInfoHead({ id, name: m.name, version: m.version, connected_at: systemTimeFromMillis(m.connectedAt) }),
        lastActivity: m.lastActivity,
        windowStart: 0,
        windowCount: 0,
        windowBytes: 0,
        windowDropped: 0,
        messagesIn: 0,
        messagesOut: 0,
        rateLimited: 0,
        dropped: 0,
      };
      remoteById.set(m.id, inst);
      const others = session.instances;
      session.instances = [...others, inst];
      rosterJoin(session.roster, others, session.instances, inst);
      session.names.add(m.name);
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
      if (!session.instances.some((i) => i.name === inst.name)) session.names.delete(inst.name);
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
      let slow: Connection[] | null = null;
      for (const other of session.instances) {
        if (other.conn.state !== "registered") continue;
        if (other.conn.peer.send(frame)) {
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
    get shuttingDown() {
      return shuttingDown;
    },
    open(peer) {
      const now = Date.now();
      const conn: Connection = { id: nextConnId++, peer, openedAt: now, lastSeen: now, state: "handshake", instance: null };
      connections.add(conn);
      stats.connectionsOpened++;
      log.debug("connection_accepted", `New connection from ${peer.address}:${peer.port}`, { ip: peer.address });
      return conn;
    },
    receive,
    oversized,
    closed(conn, reason) {
      if (conn.state !== "closed") finish(conn, reason);
    },
    tick,
    beginShutdown() {
      shuttingDown = true;
    },
    closeAll() {
      for (const conn of [...connections]) cut(conn, "shutdown", true);
    },
  };
}
