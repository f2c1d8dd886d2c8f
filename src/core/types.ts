/**
 * The relay's vocabulary: what it is given (options, a clock), what it sees a
 * connection as (`Peer`, the one interface a transport implements), and the
 * records it keeps (connections, instances, sessions).
 */
import type { Uuid } from "../protocol/messages.ts";
import type { History } from "./history.ts";
import type { ClusterLink, RemoteMembers } from "./link.ts";
import type { NameKey } from "./names.ts";
import type { ResumeLog } from "./resume-log.ts";
import type { Roster } from "./roster.ts";
import type { DisconnectReason, RelayStats } from "./stats.ts";
import type { SlidingWindow } from "./window.ts";

export interface Clock {
  /** Wall time in ms (timestamps on the wire, windows, deadlines). */
  now(): number;
  /** Monotonic ms for latency figures. */
  monotonic(): number;
}

/**
 * Where the relay hands the frames of watched sessions (src/watch/), at the routing edge: `wants` is asked
 * once per update, and `frame` must only queue. Nothing is decoded or waited for on the routing path.
 */
export interface WatchTap {
  wants(session: string): boolean;
  /** A StateBroadcast frame exactly as relayed (never written to after), and when it arrived. */
  frame(session: string, frame: Uint8Array, at: number): void;
}

export interface RelayOptions {
  /** Other relays sharing the sessions (--cluster); absent: this relay alone. */
  link?: ClusterLink;
  /**
   * Runs a function once the transports have read what this turn of the event loop brings, before they write
   * (turn.ts): a session's broadcasts of one turn then reach each member in one piece. Absent: each broadcast
   * is queued to every member as it comes.
   */
  endOfTurn?: (fn: () => void) => void;
  /** Spectators' view of watched sessions; absent: nothing is watched. */
  watch?: WatchTap;
  expectedVersion: string;
  maxInstances: number;
  /**
   * Registered instances of one session on this node, and from one address (IPv6: per /64): so one member of one
   * ensemble, or one address, cannot take every slot. Absent: `maxInstances`.
   */
  maxInstancesPerSession?: number;
  maxInstancesPerAddress?: number;
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
  /**
   * Connections still handshaking, relay-wide and per address (IPv6: per /64); past either, new ones are closed at
   * once.
   */
  maxHandshakes?: number;
  maxHandshakesPerAddress?: number;
  /**
   * Successful registrations per address (IPv6: per /64) in any 60 s: join/leave churn makes every member hear a
   * notice per cycle.
   */
  maxRegistrationsPerAddress?: number;
  /**
   * A registered instance sent nothing for this long gets a Pong (0: off). See "Sova client compatibility" in the
   * README.
   */
  nudgeIntervalMs?: number;
  /** A newcomer that takes less than REPLAY_PROGRESS_BYTES of its RegistrationResponse and history within this is cut. */
  replayTimeoutMs?: number;
  /**
   * How long a member that asked for resumption (a tunnel) stays in its session after its connection is lost, its
   * edits kept for it (docs/resume.md); 0 or absent: resumption is off.
   */
  resumeWindowMs?: number;
  /** Bytes of frames kept per session for members that may resume. */
  resumeBufferBytes?: number;
  clock?: Clock;
}

/** One connection as the relay sees it. */
export interface Peer {
  readonly address: string;
  readonly port: number;
  /** Unsent bytes held for this peer. */
  readonly pendingBytes: number;
  /** Bytes of the registration response and history replay not yet taken by the peer. */
  readonly frontBytes: number;
  /**
   * Queue a frame; false when the peer's unsent bytes would pass the bound. `front`: registration response and
   * history, always queued first. `own`: a frame made for this peer alone (a reply, a notice), which the
   * transport may copy so that a backlog of them costs what it counts; broadcasts are shared and never are.
   * `cost`: the memory a shared frame holds when more than its length (a view keeps its whole buffer alive).
   */
  send(frame: Uint8Array, front?: boolean, own?: boolean, cost?: number): boolean;
  /** Send what is queued, then close; the transport bounds how long a peer that does not read can hold it open. */
  close(): void;
  /** Drop what has not started to go out, send `last`, then close (bounded in time like `close`). */
  closeWith(last: Uint8Array): void;
  /** Close now and discard what is queued. */
  terminate(): void;
  /** Frames past this many bytes are refused (raised once the peer registers). */
  setFrameLimit(bytes: number): void;
}

/**
 * "registering": waiting for the cluster's name claim; "remote": stands for another node's members, never sent to;
 * "parked": the socket of a member that may resume is gone, its instance is kept for the grace window.
 */
export type ConnectionState = "handshake" | "registering" | "registered" | "closed" | "remote" | "parked";

export interface Connection {
  readonly id: number;
  readonly peer: Peer;
  readonly openedAt: number;
  /** The address's group for per-address limits (IPv6 by /64). */
  readonly group: string;
  lastSeen: number;
  /** When a frame was last queued for this peer (nudges). */
  lastSent: number;
  /** Set while the registration response and history are on their way; moved on by each REPLAY_PROGRESS_BYTES taken. */
  replayDeadline: number;
  /** What was left of the replay (`peer.frontBytes`) when the deadline was last moved on. */
  replayMark: number;
  state: ConnectionState;
  instance: Instance | null;
  /** Frames read while "registering", handled in order once it ends. */
  held?: Uint8Array[];
}

export interface Instance {
  readonly id: Uuid;
  readonly idText: string;
  readonly name: string;
  /** What uniqueness in a session compares, and the cluster claim's key (names.ts). */
  readonly nameKey: NameKey;
  readonly version: string;
  readonly session: Session;
  /** Replaced when a tunnel resumes the instance on a new connection. */
  conn: Connection;
  readonly connectedAt: number;
  /** Registration order on this node: a member whose `seq` is higher got this one in its RegistrationResponse. */
  readonly seq: number;
  /** InstanceConnected went out for it (false when no one asked, or a register/leave storm used the budget). */
  announced: boolean;
  /** A StateUpdate of it was relayed: every member has heard of it. */
  spoke: boolean;
  /** The address group its slot is counted against (--max-instances-per-ip); unset once it left. */
  countedGroup?: string;
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
  /** Present when the member asked for resumption (a tunnel), here or on the node that holds it. */
  resume: Resumption | null;
  /** The node that holds a remote member's connection; null for this relay's own. */
  node: string | null;
}

/** What resumption keeps of an instance (docs/resume.md). */
export interface Resumption {
  /** Bumped at each resumption: the cluster keeps the record with the highest. */
  gen: number;
  /** StateUpdates consumed from it (relayed or dropped), as its tunnel counts them. */
  consumed: number;
  /** The last log entry its tunnel said it passed on. */
  ackedN: number;
  /** While parked: when its grace window ends (0: not parked). */
  parkedUntil: number;
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
  /** Members (here or on other nodes, connected or parked) that may resume: while any, frames are logged. */
  resumers: number;
  log: ResumeLog | null;
  /** Without history or a cluster: this session's own stream and its last number. */
  readonly origin: string;
  seq: number;
  /** The last number seen here from each stream of this session (local frames and other nodes'). */
  heads: Map<string, number>;
  /** Presence notices (joins announced, departures told to everyone) left in this second's budget (notices.ts). */
  notices: NoticeBudget;
  /** This turn's broadcasts, not yet queued to the members (turn.ts); null: none. */
  turn: TurnBroadcasts | null;
}

/** A session's broadcasts of one turn, in order, for the members it had when they came (turn.ts). */
export interface TurnBroadcasts {
  readonly members: readonly Instance[];
  readonly frames: Uint8Array[];
  /** Who sent each (null: a member on another node): it does not get its own back. */
  readonly senders: Array<Instance | null>;
  /** When each arrived (the clock's monotonic ms; -1: from another node, not timed), for the relay-latency histogram. */
  readonly arrived: number[];
  readonly now: number;
}

/** A token bucket: `tokens` at `at` (ms). */
export interface NoticeBudget {
  tokens: number;
  at: number;
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
  /** Members kept for their grace window after their connection was lost. */
  readonly parked: number;
  /** Bytes of frames held in sessions' resumption logs. */
  readonly resumeBufferBytes: number;
  /** Stop relaying new frames; what is queued still goes out. */
  beginShutdown(): void;
  /** Close every connection after its queue is sent; no one is told of the others leaving. */
  closeAll(): void;
  /** Calls in from the cluster (src/core/link.ts). */
  readonly remote: RemoteMembers;
}
