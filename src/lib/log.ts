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

/**
 * Every event the relay logs. A closed union, so that a misspelt name does
 * not compile (and cannot fall out of the audit log unnoticed); tests and log
 * shippers match on these names, never on the wording of the message.
 */
export type LogEvent =
  // connections and registration
  | "connection_accepted"
  | "connection_refused"
  | "connection_closed"
  | "cooldown_started"
  | "handshake_timeout"
  | "probe"
  | "registered"
  | "registration_rejected"
  | "disconnected"
  | "socket_error"
  | "close_forced"
  | "tls_handshake_failed"
  // sessions and traffic
  | "session_created"
  | "session_emptied"
  | "id_mismatch"
  | "invalid_message"
  | "oversized_frame"
  | "rate_limited"
  | "slow_consumer"
  | "backpressure"
  | "events_limited"
  | "websocket_refused"
  | "websocket_dropped"
  // a cluster node (--cluster)
  | "cluster_claim_failed"
  | "cluster_claim_taken_over"
  | "cluster_connected"
  | "cluster_disconnected"
  | "cluster_gap"
  | "cluster_history"
  | "cluster_history_read_failed"
  | "cluster_history_unavailable"
  | "cluster_max_payload"
  | "cluster_name_conflict"
  | "cluster_names_local"
  | "cluster_names_shared"
  | "cluster_node_down"
  | "cluster_node_name_clash"
  | "cluster_node_up"
  | "cluster_starting"
  | "cluster_unreachable"
  | "cluster_unsent"
  // spectators (/watch/KEY) and the decoding of watched sessions
  | "watch_keys_loaded"
  | "watch_key_rejected"
  | "spectators_limited"
  | "watch_queue_full"
  | "watch_unreadable"
  | "watch_capped"
  // the tunnel (`sova-relay tunnel`)
  | "tunnel_listening"
  | "tunnel_stopping"
  | "tunnel_accepted"
  | "tunnel_open"
  | "tunnel_closed"
  | "tunnel_local_slow"
  | "tunnel_oversized"
  | "tunnel_upstream_failed"
  | "tunnel_upstream_failed_repeated"
  | "tunnel_upstream_closed"
  // the process
  | "starting"
  | "listening"
  | "http_listening"
  | "http_error"
  | "history_loaded"
  | "tls_reloaded"
  | "reload_failed"
  | "shutdown"
  | "shutdown_forced"
  | "shutdown_complete";

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
export const AUDIT_EVENTS = [
  "connection_accepted",
  "connection_refused",
  "registered",
  "registration_rejected",
  "disconnected",
  "rate_limited",
  "slow_consumer",
  "cooldown_started",
  "session_created",
  "session_emptied",
  "tls_handshake_failed",
  "tls_reloaded",
  "shutdown",
  "shutdown_complete",
] as const satisfies readonly LogEvent[];

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

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
