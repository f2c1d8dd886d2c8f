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
};

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
  /** Connections still handshaking per address group. */
  readonly handshakesByGroup: Map<string, number>;
  /** Successful registrations per address group (limits.ts). */
  readonly registrationWindows: Map<string, SlidingWindow>;
  readonly repeats: Repeats<LogEvent>;
  /** Another node's members by their ID (remote.ts). */
  readonly remoteById: Map<string, Instance>;
  /** The "Connection lost" Error, encoded once. */
  readonly connectionLost: Uint8Array;
  handshaking: number;
  instanceCount: number;
  nextConnId: number;
  shuttingDown: boolean;
}

export function createState(options: RelayOptions, log: Logger): RelayState {
  return {
    options,
    o: { ...DEFAULTS, ...options },
    clock: options.clock ?? SYSTEM_CLOCK,
    log,
    stats: createStats(),
    access: createAccess(options.tokens, options.sessionSecret),
    history: options.history,
    sessions: new Map(),
    connections: new Set(),
    handshakesByGroup: new Map(),
    registrationWindows: new Map(),
    repeats: createRepeats<LogEvent>(),
    remoteById: new Map(),
    connectionLost: errorFrame(WIRE_ERRORS.connectionLost()),
    handshaking: 0,
    instanceCount: 0,
    nextConnId: 1,
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
): void {
  if (s.repeats.first(event, conn.group, s.clock.now(), { ip: conn.peer.address, level }))
    s.log[level](event, message, fields);
}

/** A frame or a connection's queue dropped: counted for the relay and, when registered, for its instance. */
export function countDrop(s: RelayState, reason: DropReason, inst: Instance | null): void {
  s.stats.drops[reason]++;
  if (inst) inst.dropped++;
}
