/**
 * The one state object the relay's modules share, passed to each function
 * explicitly: the sessions and connections, the counters, the options with
 * their defaults, the clock and the log.
 */
import type { LogEvent, LogFields, Logger } from "../lib/log.ts";
import { encodeFrame } from "../protocol/messages.ts";
import { type Access, createAccess } from "./access.ts";
import type { History } from "./history.ts";
import { createRepeats, type Repeats } from "../lib/repeats.ts";
import { createStats, type DropReason, type RelayStats } from "./stats.ts";
import type { Clock, Connection, Instance, RelayOptions, Session } from "./types.ts";
import type { SlidingWindow } from "./window.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

/** The span of every per-instance and per-address window (docs/protocol.md, "Limits": per minute). */
export const RATE_WINDOW_MS = 60_000;

const SYSTEM_CLOCK: Clock = { now: Date.now, monotonic: () => performance.now() };

const DEFAULTS = {
  handshakeMaxBytes: 4096,
  maxHandshakes: 128,
  maxHandshakesPerAddress: 8,
  maxRegistrationsPerAddress: 60,
  nudgeIntervalMs: 0,
  replayTimeoutMs: 30_000,
  maxInstancesPerSession: Number.POSITIVE_INFINITY,
  maxInstancesPerAddress: Number.POSITIVE_INFINITY,
  resumeWindowMs: 0,
  resumeBufferBytes: 8 * 1024 * 1024,
};

/**
 * Registrations and departures logged one by one per address (IPv6: /64) in a minute, and in all per second,
 * before the rest are counted: an ensemble behind one NAT is logged whole, a register/leave flood from many
 * addresses is a few lines a second with counts.
 */
const MEMBER_LINES = { perKey: 30, perSecond: 20 };

export type Settings = RelayOptions & typeof DEFAULTS;

export interface RelayState {
  /** As given (`Relay.options`). */
  readonly options: RelayOptions;
  /** The options with their defaults filled in. */
  readonly o: Settings;
  readonly clock: Clock;
  readonly log: Logger;
  readonly stats: RelayStats;
  readonly access: Access;
  readonly history: History | undefined;
  readonly sessions: Map<string, Session>;
  readonly connections: Set<Connection>;
  /** Connections still handshaking per address group, oldest first (eviction.ts reads them without copying). */
  readonly handshakesByGroup: Map<string, Connection[]>;
  /** Successful registrations per address group (limits.ts). */
  readonly registrationWindows: Map<string, SlidingWindow>;
  readonly repeats: Repeats<LogEvent>;
  /** The `registered` and `disconnected` lines, on their own budget (MEMBER_LINES). */
  readonly memberLines: Repeats<LogEvent>;
  /** Registered instances per address group (the per-address instance cap). */
  readonly instancesByGroup: Map<string, number>;
  /** Handshakes opened per address group since `opensSince` (who connects the most, for eviction). */
  readonly handshakeOpens: Map<string, number>;
  opensSince: number;
  /** Another node's members by their ID (remote.ts). */
  readonly remoteById: Map<string, Instance>;
  /** The "Connection lost" Error, encoded once. */
  readonly connectionLost: Uint8Array;
  /** Members kept for their grace window (resume.ts), local and remote. */
  readonly parked: Set<Instance>;
  /** When the relay started (its clock): a member unknown to it may be one from before a restart only a window after. */
  readonly startedAt: number;
  /**
   * IDs of members that may no longer resume (they left, were cut, or their window passed), kept only while an
   * unknown member may still be one from before a restart: their secrets must not bring them back as such.
   */
  readonly ended: Set<string>;
  /** Sessions holding broadcasts of this turn (turn.ts), and whether the turn's end is asked for. */
  readonly turns: Session[];
  turnEnding: boolean;
  handshaking: number;
  instanceCount: number;
  nextConnId: number;
  nextInstanceSeq: number;
  shuttingDown: boolean;
}

export function createState(options: RelayOptions, log: Logger): RelayState {
  const clock = options.clock ?? SYSTEM_CLOCK;
  return {
    options,
    o: { ...DEFAULTS, ...options },
    clock,
    log,
    stats: createStats(),
    access: createAccess(options.tokens, options.sessionSecret),
    history: options.history,
    sessions: new Map(),
    connections: new Set(),
    handshakesByGroup: new Map(),
    registrationWindows: new Map(),
    repeats: createRepeats<LogEvent>(),
    memberLines: createRepeats<LogEvent>(60_000, 10_000, MEMBER_LINES),
    instancesByGroup: new Map(),
    handshakeOpens: new Map(),
    opensSince: 0,
    remoteById: new Map(),
    connectionLost: errorFrame(WIRE_ERRORS.connectionLost()),
    parked: new Set(),
    startedAt: clock.now(),
    ended: new Set(),
    turns: [],
    turnEnding: false,
    handshaking: 0,
    instanceCount: 0,
    nextConnId: 1,
    nextInstanceSeq: 1,
    shuttingDown: false,
  };
}

export function errorFrame(message: string): Uint8Array {
  return encodeFrame({ type: "Error", message });
}

export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Who a log line is about: the address, and once registered the instance and its
 * session (`withId`: the instance's ID too, after its name).
 */
export function who(conn: Connection, withId = false): LogFields {
  const inst = conn.instance;
  if (inst === null) return { ip: conn.peer.address };
  if (withId) return { ip: conn.peer.address, instance: inst.name, id: inst.idText, session: inst.session.id };
  return { ip: conn.peer.address, instance: inst.name, session: inst.session.id };
}

/** Per-address lines a flood would repeat: the first in a minute now, the rest as a count. */
export function logRepeated(
  s: RelayState,
  level: "info" | "warn" | "debug",
  event: LogEvent,
  conn: Connection,
  message: string,
  fields: LogFields,
  repeats: Repeats<LogEvent> = s.repeats,
): void {
  if (repeats.first(event, conn.group, s.clock.now(), { ip: conn.peer.address, level }))
    s.log[level](event, message, fields);
}

/** A frame or a connection's queue dropped: counted for the relay and, when registered, for its instance. */
export function countDrop(s: RelayState, reason: DropReason, inst: Instance | null): void {
  s.stats.drops[reason]++;
  if (inst) inst.dropped++;
}
