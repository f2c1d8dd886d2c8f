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

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  error(event: string, message: string, fields?: LogFields): void;
  warn(event: string, message: string, fields?: LogFields): void;
  info(event: string, message: string, fields?: LogFields): void;
  debug(event: string, message: string, fields?: LogFields): void;
  trace(event: string, message: string, fields?: LogFields): void;
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

/** Security-relevant events: stable names, also written to the audit log at any level. */
export const AUDIT_EVENTS: ReadonlySet<string> = new Set([
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
]);

const CONSOLA_LEVEL: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4, trace: 5 };
const LEVEL_OF_TYPE: Record<string, LogLevel> = { error: "error", warn: "warn", info: "info", debug: "debug", trace: "trace" };

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// Names and versions come from the network: a newline in one must not forge a log line,
// and a bidi control (U+202E) or a line separator (U+2028) must not reorder or split one.
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
const MAX_LINE = 2000;

function printable(message: string): string {
  const clean = message.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return clean.length > MAX_LINE ? `${clean.slice(0, MAX_LINE)}... (${clean.length - MAX_LINE} more characters)` : clean;
}

function reporter(format: LogFormat, write: (line: string) => void): ConsolaReporter {
  return {
    log(logObj: LogObject) {
      const level = LEVEL_OF_TYPE[logObj.type] ?? "info";
      const [event, message, fields] = logObj.args as [string, string, LogFields | undefined];
      if (format === "json") {
        write(`${JSON.stringify({ time: logObj.date.toISOString(), level, event, msg: printable(message), ...fields })}\n`);
      } else {
        write(`${isoSeconds(logObj.date)} ${level.toUpperCase().padEnd(5)} sova_relay: ${printable(message)}\n`);
      }
    },
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const consola = createConsola({
    level: CONSOLA_LEVEL[level],
    reporters: [reporter(options.format ?? "text", write)],
    throttle: 0,
  });
  const threshold = CONSOLA_LEVEL[level];
  const audit = options.audit;
  const at =
    (type: LogLevel) =>
    (event: string, message: string, fields?: LogFields): void => {
      if (audit && AUDIT_EVENTS.has(event)) {
        audit(`${JSON.stringify({ time: new Date().toISOString(), level: type, event, msg: printable(message), ...fields })}\n`);
      }
      if (CONSOLA_LEVEL[type] <= threshold) consola[type](event, message, fields);
    };
  return {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    trace: at("trace"),
    enabled: (l) => CONSOLA_LEVEL[l] <= threshold,
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
