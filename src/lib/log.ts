/**
 * Logging through consola with a reporter of our own: the text lines look like
 * the Rust relay's env_logger output (`2024-01-15T10:30:00Z INFO  sova_relay: ...`),
 * and `json` gives one object a line for log shippers. Consola's fancy reporter
 * and its throttling (which folds repeated lines) are kept out: every drop and
 * every disconnect must show.
 *
 * Callers pass an event name and fields; nothing here ever sees a token, since
 * sessions are named by their short hash before they reach a log call.
 */
import { createConsola, type ConsolaReporter, type LogObject } from "consola/core";

export const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = "text" | "json";

/** How an event that something can repeat is kept from flooding the log (docs/reference/log-events.md). */
export type Aggregation =
  /** Every occurrence is a line. */
  | "none"
  /** The first per address (IPv6: /64) a minute; the rest counted, in a summary line or in /metrics. */
  | "per_address"
  /** At most one line per period (10 s to a minute), carrying the count since the last. */
  | "periodic";

export interface EventSpec {
  /** The levels it is logged at, the usual one first. */
  readonly levels: readonly LogLevel[];
  /** Also written to the --audit-log file, whatever --log-level says. */
  readonly audit: boolean;
  readonly aggregation: Aggregation;
  /** What it means, in one line. */
  readonly meaning: string;
}

/**
 * Every event the relay logs, as data: tests and log shippers match on these
 * names, never on the wording of the message, so a misspelt name must not
 * compile (LogEvent is derived from the keys), and the audit log, the docs and
 * the levels the code logs at (tests/unit/lib/log-events.test.ts) all come from here.
 */
export const LOG_EVENTS = {
  // connections and registration
  connection_accepted: {
    levels: ["debug"],
    audit: true,
    aggregation: "per_address",
    meaning: "A TCP or WebSocket connection was accepted.",
  },
  connection_refused: {
    levels: ["warn"],
    audit: true,
    aggregation: "per_address",
    meaning:
      "A connection was closed at once: `--allow`/`--deny`, a per-address cap, the cool-down or the handshake caps.",
  },
  connection_closed: {
    levels: ["debug"],
    audit: false,
    aggregation: "per_address",
    meaning: "A connection that never registered ended (a probe, a scanner, a refused registration).",
  },
  cooldown_started: {
    levels: ["warn"],
    audit: true,
    aggregation: "none",
    meaning: "An address used up its failed registrations; all its registrations are refused for the cool-down.",
  },
  handshake_timeout: {
    levels: ["debug"],
    audit: false,
    aggregation: "per_address",
    meaning: "A connection sent no RegisterInstance within `--handshake-timeout` and was closed.",
  },
  probe: {
    levels: ["debug"],
    audit: false,
    aggregation: "per_address",
    meaning: "An empty frame before registration: a health check (`sova-relay health`).",
  },
  registered: {
    levels: ["info"],
    audit: true,
    aggregation: "per_address",
    meaning: "An instance registered: its name, id, session hash and address (past 30 a minute per address, counted).",
  },
  registration_rejected: {
    levels: ["warn"],
    audit: true,
    aggregation: "per_address",
    meaning: "A registration was refused with an Error frame; `reason` says why (version, token, capacity, name...).",
  },
  disconnected: {
    levels: ["info"],
    audit: true,
    aggregation: "per_address",
    meaning:
      "A registered instance left; `reason` says why (closed, slow_consumer...); past 30 a minute per address, counted.",
  },
  socket_error: {
    levels: ["debug"],
    audit: false,
    aggregation: "none",
    meaning: "A TCP socket failed (reset by the peer, for instance); the connection is closed.",
  },
  close_forced: {
    levels: ["debug"],
    audit: false,
    aggregation: "none",
    meaning: "A connection the relay closed did not take its last bytes within 5 s and was ended.",
  },
  tls_handshake_failed: {
    levels: ["warn"],
    audit: true,
    aggregation: "per_address",
    meaning: "A TLS handshake on `--tls-port` failed (a scanner, a plain-TCP client, a bad certificate).",
  },
  // sessions and traffic
  session_created: {
    levels: ["debug"],
    audit: true,
    aggregation: "none",
    meaning: "The first instance of a session registered (sessions are named by their keyed short hash).",
  },
  session_emptied: {
    levels: ["debug"],
    audit: true,
    aggregation: "none",
    meaning: "The last instance of a session left.",
  },
  id_mismatch: {
    levels: ["warn"],
    audit: false,
    aggregation: "per_address",
    meaning: "A StateUpdate carried another instance's id; it was dropped and answered with an Error.",
  },
  invalid_message: {
    levels: ["warn"],
    audit: false,
    aggregation: "per_address",
    meaning: "A frame that does not decode, or too many frames before a registration was answered; dropped.",
  },
  oversized_frame: {
    levels: ["warn"],
    audit: false,
    aggregation: "per_address",
    meaning: "A frame over `--max-message-size` (`--handshake-max-bytes` before registering); skipped unread.",
  },
  rate_limited: {
    levels: ["warn"],
    audit: true,
    aggregation: "periodic",
    meaning: "An instance passed `--rate-limit` or `--rate-limit-bytes`; its messages are dropped until it is under.",
  },
  slow_consumer: {
    levels: ["warn"],
    audit: true,
    aggregation: "none",
    meaning: "An instance that did not read (`--max-pending-bytes`, memory pressure, `--replay-timeout`) was cut.",
  },
  backpressure: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "Unsent data for all connections passed `--max-total-pending-bytes`; who was cut or paused.",
  },
  events_limited: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "/events streams refused past `--max-event-subscribers` or cut for not reading.",
  },
  websocket_refused: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "A WebSocket upgrade was refused or closed for what it sent (20 lines a minute, then a count).",
  },
  websocket_dropped: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "Bun dropped a frame past a WebSocket's send buffer; the connection was closed.",
  },
  notices_limited: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning:
      "Instances join and leave a session faster than its notice budget: members are told only of instances they know.",
  },
  http_host_refused: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "An HTTP request named a host not allowed by --allow-host (DNS rebinding); answered 421.",
  },
  accept_failed: {
    levels: ["error"],
    audit: false,
    aggregation: "periodic",
    meaning: "No file descriptor was left, so connections waited unaccepted; the count since the last line.",
  },
  // resumption (docs/resume.md)
  parked: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning:
      "A member behind a tunnel lost its connection (or its node); it stays in its session for `--resume-window`.",
  },
  resumed: {
    levels: ["info"],
    audit: true,
    aggregation: "none",
    meaning: "A tunnel restored its member: same name and id, the gap replayed (`replayed`), its edits found (`own`).",
  },
  resume_refused: {
    levels: ["warn"],
    audit: true,
    aggregation: "per_address",
    meaning: "A resumption was refused with one Error; `reason` says why (secret, gap, name_taken...).",
  },
  resume_expired: {
    levels: ["info"],
    audit: true,
    aggregation: "none",
    meaning: "A parked member was not resumed within `--resume-window`; the others are told it left.",
  },
  resume_takeover: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "A resumption replaced the member's stale (half-open) connection.",
  },
  resume_moved: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "A member of this node resumed on another node; its connection here is retired.",
  },
  resume_buffer_full: {
    levels: ["warn"],
    audit: false,
    aggregation: "per_address",
    meaning:
      "A session's resumption log passed `--resume-buffer-bytes`; frames a tunnel may need were dropped (once a minute per session).",
  },
  left: {
    levels: ["debug"],
    audit: false,
    aggregation: "none",
    meaning: "A tunnel said its player left: a normal leave at once, no grace window.",
  },
  // a cluster node (`--cluster`)
  cluster_starting: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "This node is connecting to NATS.",
  },
  cluster_connected: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "This node reached NATS (first time or again).",
  },
  cluster_unreachable: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning:
      "NATS could not be reached (at start-up, or after a connection given up); the node relays among its own instances and retries.",
  },
  cluster_disconnected: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "NATS became unreachable; the node relays among its own instances until it is back.",
  },
  cluster_connection_abandoned: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning:
      "The connection to NATS went silent and did not close (a flow dropped on the way); the node opens a new one.",
  },
  cluster_node_up: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "Another node joined the cluster.",
  },
  cluster_node_down: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "Another node stopped its heartbeats or restarted; its instances left their sessions.",
  },
  cluster_node_name_clash: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning: "Another relay uses this node's `--node-name`.",
  },
  cluster_names_shared: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "Instance names are claimed across the cluster (JetStream KV).",
  },
  cluster_names_local: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "JetStream KV is unavailable: names are unique on this node only until it is back.",
  },
  cluster_claim_failed: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "A name claim through JetStream KV failed; the name is unique on this node until claimed again.",
  },
  cluster_claim_taken_over: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "A name claim left by a node that is gone was taken over.",
  },
  cluster_name_conflict: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "A name was registered on two nodes while they were apart; both instances stay connected.",
  },
  cluster_gap: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "Frames from another node never arrived (NATS lost them); counted per node.",
  },
  cluster_unsent: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "Frames could not be sent to the other nodes (NATS unreachable, over max_payload).",
  },
  cluster_max_payload: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "NATS max_payload is below `--max-message-size`: larger edits stay on their node.",
  },
  cluster_history: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "Session history is kept in a JetStream stream for the whole cluster.",
  },
  cluster_history_unavailable: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "The JetStream history stream is unavailable: newcomers get only what this node saw.",
  },
  cluster_history_read_failed: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "Reading a session's history from JetStream failed for one newcomer.",
  },
  cluster_secret_agreed: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "This node shares the cluster's session secret (created in, or read from, JetStream KV).",
  },
  cluster_secret_waiting: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "A node with tokens waits for NATS or JetStream to learn the session secret; it admits no one until then.",
  },
  cluster_secret_unchecked: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "The node runs on a session secret not checked against the cluster's yet (NATS or JetStream away).",
  },
  cluster_secret_mismatch: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning: "This node's session secret differs from the cluster's: it stays out of the cluster.",
  },
  cluster_secret_unkept: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning: "The agreed session secret could not be kept in `--state-dir`.",
  },
  cluster_node_refused: {
    levels: ["error", "warn"],
    audit: false,
    aggregation: "none",
    meaning: "Another node uses another session secret (kept out when this node has tokens), or says none.",
  },
  // spectators (/watch/KEY) and the decoding of watched sessions (docs/watching.md)
  watch_keys_loaded: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The spectator file was read (at start and on SIGHUP): how many sessions can be watched, never a key.",
  },
  watch_key_rejected: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "/watch/ requests with a key that opens no session, or while their address cools down (never the key).",
  },
  spectators_limited: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "Spectators cut for not reading, or refused at a spectator cap.",
  },
  watch_queue_full: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "Updates of watched sessions left undecoded (the queue was full); their grids are marked stale.",
  },
  watch_unreadable: {
    levels: ["info"],
    audit: false,
    aggregation: "periodic",
    meaning: "Updates of watched sessions no Sova could read: relayed unchanged, shown as unreadable.",
  },
  watch_capped: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "A watched session's scene passed the spectators' model limits: its page shows the feed only.",
  },
  // the tunnel (`sova-relay tunnel`)
  tunnel_listening: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The tunnel is listening; the line says where to point Sova.",
  },
  tunnel_stopping: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "SIGTERM or SIGINT: the tunnel closes its connections and exits.",
  },
  tunnel_accepted: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "Sova connected to the tunnel; it opens the upstream to the relay.",
  },
  tunnel_open: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The upstream to the relay is open; the connection is carried.",
  },
  tunnel_closed: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "A carried connection ended, with its bytes up and down.",
  },
  tunnel_upstream_closed: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The relay closed the upstream; the tunnel closes the local connection so Sova sees it.",
  },
  tunnel_resumable: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The relay keeps this player's session for its grace window should the connection be lost.",
  },
  tunnel_gap: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "The upstream was lost; Sova's connection stays open while the tunnel resumes.",
  },
  tunnel_attempt: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "One attempt at resuming, through one of the --to addresses, after its backoff.",
  },
  tunnel_resumed: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The session was resumed: the gap filled, the held edits sent (`gap_ms`, `resent`).",
  },
  tunnel_resume_failed: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning:
      'The session could not be kept (refused, window passed, held edits over `--hold-bytes`); Sova is told "Connection lost".',
  },
  tunnel_upstream_failed: {
    levels: ["error", "debug"],
    audit: false,
    aggregation: "periodic",
    meaning: "The relay could not be reached (DNS, refused, certificate, HTTP status); the line says why.",
  },
  tunnel_upstream_failed_repeated: {
    levels: ["warn"],
    audit: false,
    aggregation: "periodic",
    meaning: "How many more times the last failure happened (Sova retries every few seconds).",
  },
  tunnel_local_slow: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "The local side (Sova) stopped reading; the tunnel closed it.",
  },
  tunnel_oversized: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "Sova sent a frame over the tunnel's `--max-message-size`; skipped and answered as the relay would.",
  },
  // the process
  starting: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The relay started, with its version.",
  },
  listening: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The relay is ready: its addresses and ports (tests and scripts read the ports from it).",
  },
  http_listening: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "The status page, /status, /healthz, /metrics and /relay are served.",
  },
  http_error: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning: "An HTTP handler failed; the request got a 500.",
  },
  history_loaded: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "History was read from `--state-dir` at start-up.",
  },
  history_write_failed: {
    levels: ["error"],
    audit: false,
    aggregation: "periodic",
    meaning: "History could not be written to --state-dir (logged once until it can be again); relaying goes on.",
  },
  history_write_recovered: {
    levels: ["info"],
    audit: false,
    aggregation: "none",
    meaning: "History is written to --state-dir again after failing.",
  },
  tls_reloaded: {
    levels: ["info"],
    audit: true,
    aggregation: "none",
    meaning: "SIGHUP: the TLS certificate and key were loaded again.",
  },
  reload_failed: {
    levels: ["error"],
    audit: false,
    aggregation: "none",
    meaning: "SIGHUP: reloading failed; what was loaded stays in use.",
  },
  shutdown: {
    levels: ["info"],
    audit: true,
    aggregation: "none",
    meaning: "SIGTERM or SIGINT: the relay stops accepting and flushes queued frames.",
  },
  shutdown_forced: {
    levels: ["warn"],
    audit: false,
    aggregation: "none",
    meaning: "A second signal during shutdown: the relay exits at once.",
  },
  shutdown_complete: {
    levels: ["info"],
    audit: true,
    aggregation: "none",
    meaning: "Shutdown finished; `flushed` says whether every queued frame went out.",
  },
} as const satisfies Record<string, EventSpec>;

export type LogEvent = keyof typeof LOG_EVENTS;

export type LogFields = Record<string, string | number | boolean | null | undefined>;

type LogCall = (event: LogEvent, message: string, fields?: LogFields) => void;

export interface Logger {
  error: LogCall;
  warn: LogCall;
  info: LogCall;
  debug: LogCall;
  trace: LogCall;
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where finished lines go; stderr by default, as env_logger does. */
  write?: (line: string) => void;
  /** Receives every security event as a JSON line, whatever the level (--audit-log). */
  audit?: (line: string) => void;
}

/** Security-relevant events, also written to the audit log at any level. */
export type AuditEvent = { [E in LogEvent]: (typeof LOG_EVENTS)[E]["audit"] extends true ? E : never }[LogEvent];

export const AUDIT_EVENTS = (Object.keys(LOG_EVENTS) as LogEvent[]).filter(
  (e) => LOG_EVENTS[e].audit,
) as readonly AuditEvent[];

const IS_AUDIT: ReadonlySet<LogEvent> = new Set(AUDIT_EVENTS);

export function isAuditEvent(event: LogEvent): event is AuditEvent {
  return IS_AUDIT.has(event);
}

const CONSOLA_LEVEL: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4, trace: 5 };
const LEVEL_OF_TYPE: Record<string, LogLevel> = {
  error: "error",
  warn: "warn",
  info: "info",
  debug: "debug",
  trace: "trace",
};

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// Names and versions come from the network: a newline in one must not forge a log line,
// and a bidi control (U+202E) or a line separator (U+2028) must not reorder or split one.
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
const MAX_LINE = 2000;

function printable(message: string): string {
  const clean = message.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return clean.length > MAX_LINE
    ? `${clean.slice(0, MAX_LINE)}... (${clean.length - MAX_LINE} more characters)`
    : clean;
}

function reporter(format: LogFormat, write: (line: string) => void): ConsolaReporter {
  return {
    log(logObj: LogObject) {
      const level = LEVEL_OF_TYPE[logObj.type] ?? "info";
      const [event, message, fields] = logObj.args as [LogEvent, string, LogFields | undefined];
      if (format === "json") {
        write(jsonLine(logObj.date, level, event, message, fields));
      } else {
        write(`${isoSeconds(logObj.date)} ${level.toUpperCase().padEnd(5)} sova_relay: ${printable(message)}\n`);
      }
    },
  };
}

function jsonLine(date: Date, level: LogLevel, event: LogEvent, message: string, fields?: LogFields): string {
  return `${JSON.stringify({ time: date.toISOString(), level, event, msg: printable(message), ...fields })}\n`;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  // Consola alone decides which levels show.
  const consola = createConsola({
    level: CONSOLA_LEVEL[options.level ?? "info"],
    reporters: [reporter(options.format ?? "text", write)],
    throttle: 0,
  });
  const audit = options.audit;
  const at =
    (type: LogLevel): LogCall =>
    (event, message, fields) => {
      // The audit file takes its events whatever the level, so it is fed before consola's filter.
      if (audit && isAuditEvent(event)) audit(jsonLine(new Date(), type, event, message, fields));
      consola[type](event, message, fields);
    };
  return {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    trace: at("trace"),
    enabled: (l) => CONSOLA_LEVEL[l] <= consola.level,
  };
}

/** A logger that drops everything (tests of pure logic, the health check). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  trace() {},
  enabled: () => false,
};
