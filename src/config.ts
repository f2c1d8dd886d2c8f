/**
 * The relay's configuration: one table of options that gives the CLI flags,
 * their environment names (`SOVA_RELAY_<NAME>`), defaults and checks. citty
 * reads the command line but has no number type and keeps only the last of a
 * repeated flag, so values are checked here and `--token` is collected here.
 */
import { readFileSync } from "node:fs";
import pkg from "../package.json" with { type: "json" };
import { RelayError } from "./errors.ts";
import { parseCidr, type Cidr } from "./net/cidr.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";

export const VERSION: string = pkg.version;

export interface RelayConfig {
  host: string;
  port: number;
  /** Empty: the same as `host`. */
  httpHost: string;
  /** 0: no HTTP listener. */
  httpPort: number;
  maxInstances: number;
  rateLimit: number;
  maxMessageSize: number;
  maxPendingBytes: number;
  maxTotalPendingBytes: number;
  handshakeTimeout: number;
  idleTimeout: number;
  expectedVersion: string;
  tokens: string[];
  logLevel: LogLevel;
  logFormat: LogFormat;
  shutdownTimeout: number;
  /** null: no TLS listener; 0: any free port. */
  tlsPort: number | null;
  tlsCert: string;
  tlsKey: string;
  allow: Cidr[];
  deny: Cidr[];
  maxConnectionsPerIp: number;
  maxFailedRegistrations: number;
  failedRegistrationCooldown: number;
  /** Bytes per instance per 60 s window; 0 turns the limit off. */
  rateLimitBytes: number;
  /** Empty: no audit file. */
  auditLog: string;
  /** Updates kept per session for late joiners; 0: off. */
  history: number;
  historyBytes: number;
  /** Seconds; 0: no age limit. */
  historyAge: number;
  /** Empty: history in memory only. */
  stateDir: string;
  stateReset: boolean;
  /** NATS servers; empty: no cluster. */
  cluster: string[];
  /** Empty: hostname plus a random suffix. */
  nodeName: string;
  clusterCreds: string;
  clusterCa: string;
  clusterUser: string;
  clusterPassword: string;
  clusterToken: string;
}

type Parser<T> = (raw: string, flag: string) => T;

interface OptionSpec<K extends keyof RelayConfig = keyof RelayConfig> {
  key: K;
  description: string;
  default: RelayConfig[K];
  parse: Parser<RelayConfig[K]>;
  /** Names the seed relay read, still honoured after ours. */
  legacyEnv?: string[];
  valueHint?: string;
  /** Every occurrence counts: joined with commas before parsing, like the environment form. */
  repeatable?: boolean;
}

function fail(flag: string, raw: string, expected: string): never {
  throw new RelayError("E_CONFIG", `invalid value for --${flag}: '${raw}' (expected ${expected})`);
}

function integer(min: number, max: number): Parser<number> {
  return (raw, flag) => {
    const t = raw.trim();
    if (!/^\d+$/.test(t)) fail(flag, raw, `a whole number from ${min} to ${max}`);
    const n = Number(t);
    if (n < min || n > max) fail(flag, raw, `a whole number from ${min} to ${max}`);
    return n;
  };
}

function seconds(min: number): Parser<number> {
  return (raw, flag) => {
    const t = raw.trim();
    if (!/^\d+(\.\d+)?$/.test(t)) fail(flag, raw, `a number of seconds, at least ${min}`);
    const n = Number(t);
    if (n < min || n > 86_400 * 365) fail(flag, raw, `a number of seconds, at least ${min}`);
    return n;
  };
}

function nonEmpty(raw: string, flag: string): string {
  if (raw.trim() === "") fail(flag, raw, "a non-empty string");
  return raw.trim();
}

function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return (raw, flag) => {
    const v = raw.trim().toLowerCase() as T;
    if (!values.includes(v)) fail(flag, raw, `one of ${values.join(", ")}`);
    return v;
  };
}

/** RUST_LOG may be `debug` or `sova_relay=debug,tokio=warn`: take our level, or the global one. */
function rustLogLevel(raw: string, flag: string): LogLevel {
  const parts = raw.split(",").map((p) => p.trim().toLowerCase());
  const ours = parts.find((p) => p.startsWith("sova_relay="))?.split("=")[1];
  const global = parts.find((p) => !p.includes("="));
  const level = ours ?? global ?? "info";
  return oneOf(LOG_LEVELS)(level === "off" ? "error" : level, flag);
}

const MAX_FRAME = 0xffffffff;

/** Shown in logs and /status, carried in every frame sent to the cluster: short, printable. */
function nodeName(raw: string, flag: string): string {
  const t = raw.trim();
  if (t === "" || t.length > 64 || Buffer.byteLength(t) > 200 || /[\u0000-\u001f\u007f-\u009f]/.test(t)) fail(flag, raw, "1 to 64 printable characters");
  return t;
}

/** nats://, tls:// or a bare host:port; several comma-separated. */
function natsUrls(raw: string, flag: string): string[] {
  const urls = raw.split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) fail(flag, raw, "nats://HOST:PORT");
  for (const u of urls) {
    let ok = false;
    try {
      const url = new URL(u.includes("://") ? u : `nats://${u}`);
      ok = ["nats:", "tls:"].includes(url.protocol) && url.hostname !== "";
    } catch {
      ok = false;
    }
    // The value may hold user:password@: never echo it.
    if (!ok) throw new RelayError("E_CONFIG", `invalid value for --${flag.split(" ")[0]}: expected nats://HOST:PORT (or tls://), comma-separated for several`);
  }
  return urls;
}

export const OPTIONS: readonly OptionSpec[] = [
  { key: "host", description: "Address to listen on", default: "0.0.0.0", parse: nonEmpty, valueHint: "addr" },
  { key: "port", description: "TCP port for Sova instances (0: any free port)", default: 9090, parse: integer(0, 65535) },
  { key: "httpHost", description: "Address for the status page and metrics (default: --host)", default: "", parse: (raw) => raw.trim(), valueHint: "addr" },
  { key: "httpPort", description: "Port for the status page, /status, /healthz and /metrics (0: off)", default: 8080, parse: integer(0, 65535) },
  { key: "maxInstances", description: "Registered instances allowed in the whole relay", default: 20, parse: integer(1, 1_000_000), legacyEnv: ["SOVA_MAX_INSTANCES"] },
  { key: "rateLimit", description: "Messages per instance per 60 s window (0: no limit)", default: 1000, parse: integer(0, 1_000_000_000), legacyEnv: ["SOVA_RATE_LIMIT"] },
  { key: "maxMessageSize", description: "Largest frame body accepted, in bytes", default: 1_048_576, parse: integer(64, MAX_FRAME) },
  { key: "maxPendingBytes", description: "Unsent bytes held for one instance before it is cut as a slow consumer", default: 8_388_608, parse: integer(1024, Number.MAX_SAFE_INTEGER) },
  { key: "maxTotalPendingBytes", description: "Unsent bytes held for all instances together; past it, reading pauses and the instances furthest behind are cut", default: 33_554_432, parse: integer(1024, Number.MAX_SAFE_INTEGER) },
  { key: "handshakeTimeout", description: "Seconds a new connection has to send RegisterInstance", default: 10, parse: seconds(0.05) },
  { key: "idleTimeout", description: "Seconds of silence before a connection is closed (0: never)", default: 0, parse: seconds(0) },
  { key: "shutdownTimeout", description: "Seconds to flush queued frames on SIGTERM/SIGINT", default: 5, parse: seconds(0) },
  { key: "expectedVersion", description: "Sova version instances must report", default: VERSION, parse: nonEmpty, valueHint: "version" },
  { key: "rateLimitBytes", description: "Bytes per instance per 60 s window (0: no limit)", default: 67_108_864, parse: integer(0, Number.MAX_SAFE_INTEGER) },
  { key: "tlsPort", description: "TLS port beside the plain one, same sessions (unset: no TLS; 0: any free port)", default: null, parse: integer(0, 65535) },
  { key: "tlsCert", description: "TLS certificate chain, PEM (reloaded on SIGHUP)", default: "", parse: nonEmpty, valueHint: "file" },
  { key: "tlsKey", description: "TLS private key, PEM (reloaded on SIGHUP)", default: "", parse: nonEmpty, valueHint: "file" },
  { key: "maxConnectionsPerIp", description: "Open connections allowed from one address", default: 16, parse: integer(1, 1_000_000) },
  { key: "maxFailedRegistrations", description: "Failed registrations per address per minute before a cool-down", default: 10, parse: integer(1, 1_000_000) },
  { key: "failedRegistrationCooldown", description: "Seconds an address is refused after too many failed registrations", default: 300, parse: seconds(0) },
  { key: "auditLog", description: "Also append security events (JSON lines) to this file; reopened on SIGHUP", default: "", parse: nonEmpty, valueHint: "file" },
  { key: "history", description: "Updates kept per session and replayed to newcomers (0: off)", default: 0, parse: integer(0, 10_000_000) },
  { key: "historyBytes", description: "Bytes of history kept per session", default: 16_777_216, parse: integer(0, Number.MAX_SAFE_INTEGER) },
  { key: "historyAge", description: "Seconds an update stays in history (0: no limit)", default: 0, parse: seconds(0) },
  { key: "stateDir", description: "Directory for the history database (SQLite); history survives restarts", default: "", parse: nonEmpty, valueHint: "dir" },
  { key: "cluster", description: "Join a cluster of relays over NATS (nats://HOST:PORT); repeatable or comma-separated", default: [], parse: natsUrls, valueHint: "url", repeatable: true },
  { key: "nodeName", description: "This relay's name in the cluster (default: hostname and a random suffix)", default: "", parse: nodeName, valueHint: "name" },
  { key: "clusterCreds", description: "NATS credentials file (.creds) for --cluster", default: "", parse: nonEmpty, valueHint: "file" },
  { key: "clusterCa", description: "CA certificate (PEM) for a NATS server with TLS", default: "", parse: nonEmpty, valueHint: "file" },
  { key: "clusterUser", description: "NATS user for --cluster (better from the environment)", default: "", parse: nonEmpty, valueHint: "user" },
  { key: "clusterPassword", description: "NATS password for --cluster (better from the environment)", default: "", parse: nonEmpty, valueHint: "secret" },
  { key: "clusterToken", description: "NATS token for --cluster (better from the environment)", default: "", parse: nonEmpty, valueHint: "secret" },
  { key: "logLevel", description: "error, warn, info, debug or trace", default: "info", parse: oneOf(LOG_LEVELS), legacyEnv: ["RUST_LOG"], valueHint: "level" },
  { key: "logFormat", description: "text or json", default: "text", parse: oneOf(["text", "json"] as const), valueHint: "format" },
];

export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `SOVA_RELAY_${flagName(key).replace(/-/g, "_").toUpperCase()}`;
}

/** Flags that take no value. */
const BOOLEAN_FLAGS = new Set(["help", "h", "version", "v", "state-reset"]);
/** Flags outside the table. */
const EXTRA_FLAGS = new Set(["token", "token-file", "allow", "deny"]);

export type Env = Record<string, string | undefined>;

/** Every `--name value` / `--name=value` occurrence, in order; unknown flags are errors. */
export function scanFlags(argv: readonly string[], known: ReadonlySet<string>): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("-") || arg === "-") throw new RelayError("E_CONFIG", `unexpected argument '${arg}' (options start with --; see --help)`);
    const eq = arg.indexOf("=");
    const name = arg.replace(/^--?/, "").slice(0, eq === -1 ? undefined : eq - (arg.startsWith("--") ? 2 : 1));
    if (BOOLEAN_FLAGS.has(name)) {
      found.set(name, ["true"]);
      continue;
    }
    if (!known.has(name)) throw new RelayError("E_CONFIG", `unknown option '--${name}' (see --help)`);
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      if (value === undefined) throw new RelayError("E_CONFIG", `option --${name} needs a value`);
      i++;
    }
    found.set(name, [...(found.get(name) ?? []), value]);
  }
  return found;
}

function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new RelayError("E_CONFIG", `cannot read --token-file '${path}' (${code})`);
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/**
 * Builds the configuration from the command line and the environment; flags
 * beat `SOVA_RELAY_*`, which beats the seed's names, which beat defaults.
 */
export function resolveConfig(argv: readonly string[], env: Env): RelayConfig {
  const known = new Set([...OPTIONS.map((o) => flagName(o.key)), ...EXTRA_FLAGS]);
  const flags = scanFlags(argv, known);
  const config = {} as Record<keyof RelayConfig, unknown>;
  for (const opt of OPTIONS) {
    const flag = flagName(opt.key);
    const fromFlag = opt.repeatable ? flags.get(flag)?.join(",") : flags.get(flag)?.at(-1);
    if (fromFlag !== undefined) {
      config[opt.key] = opt.parse(fromFlag, flag);
      continue;
    }
    const fromEnv = env[envName(opt.key)];
    if (fromEnv !== undefined && fromEnv !== "") {
      config[opt.key] = opt.parse(fromEnv, `${flag} (from ${envName(opt.key)})`);
      continue;
    }
    const legacy = opt.legacyEnv?.find((name) => env[name] !== undefined && env[name] !== "");
    config[opt.key] = legacy ? (opt.key === "logLevel" ? rustLogLevel(env[legacy]!, `${flag} (from ${legacy})`) : opt.parse(env[legacy]!, `${flag} (from ${legacy})`)) : opt.default;
  }
  const tokenFlags = flags.get("token");
  const tokens = tokenFlags ?? (env.SOVA_RELAY_TOKENS ?? "").split(",");
  // --allow/--deny repeat; their environment forms are comma-separated.
  for (const key of ["allow", "deny"] as const) {
    const list = flags.get(key) ?? (env[envName(key)] ?? "").split(",").filter((x) => x.trim() !== "");
    config[key] = list.map((c) => parseCidr(c));
  }
  config.stateReset = flags.has("state-reset") || ["1", "true", "yes"].includes((env.SOVA_RELAY_STATE_RESET ?? "").toLowerCase());
  if (config.tlsPort !== null && (config.tlsCert === "" || config.tlsKey === "")) {
    throw new RelayError("E_CONFIG", "--tls-port needs --tls-cert and --tls-key (PEM files)");
  }
  const tokenFile = flags.get("token-file")?.at(-1) ?? env.SOVA_RELAY_TOKEN_FILE;
  const all = [...tokens, ...(tokenFile ? readTokenFile(tokenFile) : [])].map((t) => t.trim());
  if (tokenFlags?.some((t) => t.trim() === "")) throw new RelayError("E_CONFIG", "invalid value for --token: a token cannot be empty");
  config.tokens = [...new Set(all.filter((t) => t !== ""))];
  return config as unknown as RelayConfig;
}
