/**
 * The relay's configuration: one table of options that gives the CLI flags
 * (citty's arg definitions are generated from it), their environment names
 * (`SOVA_RELAY_<NAME>`), defaults and checks. Sub-commands read their options
 * through rows of the same table.
 *
 * Two conventions carry the table's types: a key ending in `Ms` is given in
 * seconds (flag and environment) and held in milliseconds, converted in
 * `resolveOptions` only; a row whose default is a list is a repeatable flag,
 * comma-separated in the environment.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ArgsDef, type ParsedArgs } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { RelayError } from "../lib/errors.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../lib/log.ts";
import { type Cidr, parseCidr } from "../lib/cidr.ts";

export const VERSION: string = pkg.version;

export interface RelayConfig {
  host: string;
  /** 0: any free port; null: no plain listener (`--port 0` beside `--tls-port`). */
  port: number | null;
  /** Empty: the same as `host`. */
  httpHost: string;
  /** 0: any free port; null: no HTTP listener (`--http-port 0`). */
  httpPort: number | null;
  maxEventSubscribers: number;
  /** Empty: `spectators` in --state-dir, when there is one. */
  spectatorFile: string;
  maxSpectators: number;
  maxSpectatorsPerIp: number;
  maxSpectatorsPerSession: number;
  maxInstances: number;
  rateLimit: number;
  maxMessageSize: number;
  maxPendingBytes: number;
  maxTotalPendingBytes: number;
  handshakeTimeoutMs: number;
  /** 0: never. */
  idleTimeoutMs: number;
  expectedVersion: string;
  /** From --token, SOVA_RELAY_TOKENS and --token-file together, without duplicates. */
  tokens: string[];
  tokenFile: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  shutdownTimeoutMs: number;
  /** null: no TLS listener; 0: any free port. */
  tlsPort: number | null;
  tlsCert: string;
  tlsKey: string;
  allow: Cidr[];
  deny: Cidr[];
  maxConnectionsPerIp: number;
  maxFailedRegistrations: number;
  failedRegistrationCooldownMs: number;
  /** Bytes per instance per 60 s window; 0 turns the limit off. */
  rateLimitBytes: number;
  /** Empty: no audit file. */
  auditLog: string;
  /** Updates kept per session for late joiners; 0: off. */
  history: number;
  historyBytes: number;
  /** 0: no age limit. */
  historyAgeMs: number;
  /** Empty: history in memory only. */
  stateDir: string;
  stateReset: boolean;
  /** Milliseconds; 0: no nudges. */
  nudgeInterval: number;
  handshakeMaxBytes: number;
  maxHandshakes: number;
  maxHandshakesPerIp: number;
  maxRegistrationsPerIp: number;
  /** Seconds. */
  replayTimeoutMs: number;
  /** Proxies allowed to name the client in X-Forwarded-For / Forwarded on the WebSocket endpoint. */
  trustProxy: Cidr[];
  /** NATS servers; empty: no cluster. */
  cluster: string[];
  /** Empty: hostname plus a random suffix. */
  nodeName: string;
  clusterCreds: string;
  clusterCa: string;
  clusterUser: string;
  clusterPassword: string;
  clusterToken: string;
  /** The session secret every node shares, for a cluster without JetStream (src/cluster/secret.ts). */
  clusterSecret: string;
}

type Parser<T> = (raw: string, flag: string) => T;
/** What one flag value parses to: a list option parses its items one at a time. */
type Item<T> = T extends readonly (infer E)[] ? E : T;

export interface OptionSpec<C, K extends keyof C> {
  key: K;
  description: string;
  /** In the flag's units (seconds for `...Ms` keys). */
  default: C[K];
  parse: Parser<Item<C[K]>>;
  /** Names the seed relay read, still honoured after ours. */
  legacyEnv?: string[];
  valueHint?: string;
  /** The flag when it is not the key in kebab case (`tokens` is given as `--token`, once per token). */
  flag?: string;
}

/** Rows of any key of C, each typed by its own key. */
export type OptionTable<C> = ReadonlyArray<{ [K in keyof C]-?: OptionSpec<C, K> }[keyof C]>;

function fail(flag: string, raw: string, expected: string): never {
  throw new RelayError("E_CONFIG", `invalid value for --${flag}: '${raw}' (expected ${expected})`);
}

export function integer(min: number, max: number): Parser<number> {
  return (raw, flag) => {
    const t = raw.trim();
    if (!/^\d+$/.test(t)) fail(flag, raw, `a whole number from ${min} to ${max}`);
    const n = Number(t);
    if (n < min || n > max) fail(flag, raw, `a whole number from ${min} to ${max}`);
    return n;
  };
}

/** For `...Ms` keys: the value stays in seconds here; `resolveOptions` converts it. */
export function seconds(min: number): Parser<number> {
  return (raw, flag) => {
    const t = raw.trim();
    if (!/^\d+(\.\d+)?$/.test(t)) fail(flag, raw, `a number of seconds, at least ${min}`);
    const n = Number(t);
    if (n < min || n > 86_400 * 365) fail(flag, raw, `a number of seconds, at least ${min}`);
    return n;
  };
}

export /**
 * A port to listen on: `any` lets the OS pick (the port is logged at start-up,
 * where tests and scripts read it); `0` means what the option documents,
 * here null (off) or 0 (any free port).
 */
function listenPort(zero: "off" | "any"): Parser<number | null> {
  const number = integer(0, 65535);
  return (raw, flag) => {
    if (raw.trim().toLowerCase() === "any") return 0;
    const n = number(raw, flag);
    return n === 0 && zero === "off" ? null : n;
  };
}

export function nonEmpty(raw: string, flag: string): string {
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

/** Never echoes the value: it is a secret. */
function token(raw: string, flag: string): string {
  if (raw.trim() === "") throw new RelayError("E_CONFIG", `invalid value for --${flag}: a token cannot be empty`);
  return raw.trim();
}

function cidr(raw: string): Cidr {
  return parseCidr(raw.trim());
}

/** Environment form of a boolean flag (`SOVA_RELAY_STATE_RESET=1`). */
function yesNo(raw: string, flag: string): boolean {
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off", ""].includes(v)) return false;
  return fail(flag, raw, "1, true, yes, 0, false or no");
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
/**
 * Connections per address beyond --max-instances by default: instances reconnecting while their old connection is
 * still being noticed as gone.
 */
const RECONNECT_ROOM = 8;

/** Shown in logs and /status, carried in every frame sent to the cluster: short, printable. */
function nodeName(raw: string, flag: string): string {
  const t = raw.trim();
  if (t === "" || t.length > 64 || Buffer.byteLength(t) > 200 || /\p{Cc}/u.test(t))
    fail(flag, raw, "1 to 64 printable characters");
  return t;
}

/** nats://, tls:// or a bare host:port (a list row: each one checked on its own). */
function natsUrl(raw: string, flag: string): string {
  const u = raw.trim();
  let ok = false;
  try {
    const url = new URL(u.includes("://") ? u : `nats://${u}`);
    ok = ["nats:", "tls:"].includes(url.protocol) && url.hostname !== "";
  } catch {
    ok = false;
  }
  // The value may hold user:password@: never echo it.
  if (!ok)
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag.split(" ")[0]}: expected nats://HOST:PORT (or tls://), comma-separated for several`,
    );
  return u;
}

export const OPTIONS: OptionTable<RelayConfig> = [
  { key: "host", description: "Address to listen on", default: "0.0.0.0", parse: nonEmpty, valueHint: "addr" },
  {
    key: "port",
    description: "TCP port for Sova instances (0 or any: any free port; 0 beside --tls-port: none)",
    default: 9090,
    parse: listenPort("off"),
  },
  {
    key: "httpHost",
    description:
      "Address for the status page and metrics; they need no login," +
      " so loopback unless you choose (0.0.0.0: everywhere)",
    default: "127.0.0.1",
    parse: (raw) => raw.trim(),
    valueHint: "addr",
  },
  {
    key: "httpPort",
    description: "Port for the status page, /status, /healthz and /metrics (0: off; any: any free port)",
    default: 8080,
    parse: listenPort("off"),
  },
  {
    key: "maxEventSubscribers",
    description: "Status pages following /events at once; past it, 503",
    default: 32,
    parse: integer(1, 100_000),
  },
  {
    key: "spectatorFile",
    description:
      "Spectator key digests, one session a line, written by `sova-relay watch enable` and reloaded on SIGHUP" +
      " (default: spectators in --state-dir)",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "maxSpectators",
    description: "Spectator pages following /watch/KEY/events at once, in the whole relay; past it, 503",
    default: 64,
    parse: integer(1, 100_000),
  },
  {
    key: "maxSpectatorsPerIp",
    description: "Spectator pages from one address (IPv6: per /64)",
    default: 8,
    parse: integer(1, 100_000),
  },
  {
    key: "maxSpectatorsPerSession",
    description: "Spectator pages of one session",
    default: 48,
    parse: integer(1, 100_000),
  },
  {
    key: "maxInstances",
    description: "Registered instances allowed in the whole relay",
    default: 20,
    parse: integer(1, 1_000_000),
    legacyEnv: ["SOVA_MAX_INSTANCES"],
  },
  {
    key: "rateLimit",
    description: "Messages per instance per 60 s window (0: no limit)",
    default: 1000,
    parse: integer(0, 1_000_000_000),
    legacyEnv: ["SOVA_RATE_LIMIT"],
  },
  {
    key: "maxMessageSize",
    description: "Largest frame body accepted, in bytes",
    default: 1_048_576,
    parse: integer(64, MAX_FRAME),
  },
  {
    key: "maxPendingBytes",
    description: "Unsent bytes held for one instance before it is cut as a slow consumer",
    default: 8_388_608,
    parse: integer(1024, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "maxTotalPendingBytes",
    description:
      "Unsent bytes held for all instances together; past it, reading pauses and the instances furthest behind are cut",
    default: 33_554_432,
    parse: integer(1024, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "handshakeTimeoutMs",
    description: "Seconds a new connection has to send RegisterInstance",
    default: 10,
    parse: seconds(0.05),
  },
  {
    key: "idleTimeoutMs",
    description: "Seconds of silence before a connection is closed (0: never)",
    default: 0,
    parse: seconds(0),
  },
  {
    key: "shutdownTimeoutMs",
    description: "Seconds to flush queued frames on SIGTERM/SIGINT",
    default: 5,
    parse: seconds(0),
  },
  {
    key: "expectedVersion",
    description: "Sova version instances must report",
    default: VERSION,
    parse: nonEmpty,
    valueHint: "version",
  },
  {
    key: "rateLimitBytes",
    description: "Bytes per instance per 60 s window (0: no limit)",
    default: 67_108_864,
    parse: integer(0, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "tlsPort",
    description: "TLS port beside the plain one, same sessions (unset: no TLS; 0 or any: any free port)",
    default: null,
    parse: listenPort("any"),
  },
  {
    key: "tlsCert",
    description: "TLS certificate chain, PEM (reloaded on SIGHUP)",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "tlsKey",
    description: "TLS private key, PEM (reloaded on SIGHUP)",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "maxConnectionsPerIp",
    description:
      `Open connections allowed from one address, IPv6 counted per /64` +
      ` (0: --max-instances + ${RECONNECT_ROOM}, so a whole ensemble behind one NAT can join and reconnect)`,
    default: 0,
    parse: integer(0, 1_000_000),
  },
  {
    key: "maxFailedRegistrations",
    description:
      "Failed registrations (bad token, junk) one address may make in a burst, earned back at this many a minute",
    default: 10,
    parse: integer(1, 1_000_000),
  },
  {
    key: "failedRegistrationCooldownMs",
    description: "Seconds every registration from an address is refused once its failed registrations are used up",
    default: 10,
    parse: seconds(0),
  },
  {
    key: "auditLog",
    description: "Also append security events (JSON lines) to this file; reopened on SIGHUP",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "history",
    description: "Updates kept per session and replayed to newcomers (0: off)",
    default: 0,
    parse: integer(0, 10_000_000),
  },
  {
    key: "historyBytes",
    description: "Bytes of history kept per session",
    default: 16_777_216,
    parse: integer(0, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "historyAgeMs",
    description: "Seconds an update stays in history (0: no limit)",
    default: 0,
    parse: seconds(0),
  },
  {
    key: "stateDir",
    description: "Directory for the history database (SQLite); history survives restarts",
    default: "",
    parse: nonEmpty,
    valueHint: "dir",
  },
  {
    key: "nudgeInterval",
    description:
      "Milliseconds after which a registered instance sent nothing gets a Pong," +
      " so today's Sova client's waiting edits leave (0: off)",
    default: 40,
    parse: integer(0, 3_600_000),
  },
  {
    key: "handshakeMaxBytes",
    description: "Largest frame accepted before registration, in bytes",
    default: 4096,
    parse: integer(64, MAX_FRAME),
  },
  {
    key: "maxHandshakes",
    description: "Connections that have not registered yet, in the whole relay",
    default: 128,
    parse: integer(1, 1_000_000),
  },
  {
    key: "maxHandshakesPerIp",
    description: "Connections that have not registered yet, per address (IPv6: per /64)",
    default: 8,
    parse: integer(1, 1_000_000),
  },
  {
    key: "maxRegistrationsPerIp",
    description: "Registrations per address (IPv6: per /64) in any 60 s",
    default: 60,
    parse: integer(1, 1_000_000),
  },
  {
    key: "replayTimeoutMs",
    description: "Seconds a newcomer has to take its registration response and session history before it is cut",
    default: 30,
    parse: seconds(1),
  },
  {
    key: "trustProxy",
    description:
      "Reverse proxies (CIDR) whose X-Forwarded-For / Forwarded name the client on /relay" +
      " (default: none; the direct peer is the client)",
    default: [],
    parse: cidr,
    valueHint: "cidr",
  },
  {
    key: "cluster",
    description: "Join a cluster of relays over NATS (nats://HOST:PORT); repeatable or comma-separated",
    default: [],
    parse: natsUrl,
    valueHint: "url",
  },
  {
    key: "nodeName",
    description: "This relay's name in the cluster (default: hostname and a random suffix)",
    default: "",
    parse: nodeName,
    valueHint: "name",
  },
  {
    key: "clusterCreds",
    description: "NATS credentials file (.creds) for --cluster",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "clusterCa",
    description: "CA certificate (PEM) for a NATS server with TLS",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "clusterUser",
    description: "NATS user for --cluster (better from the environment)",
    default: "",
    parse: nonEmpty,
    valueHint: "user",
  },
  {
    key: "clusterPassword",
    description: "NATS password for --cluster (better from the environment)",
    default: "",
    parse: nonEmpty,
    valueHint: "secret",
  },
  {
    key: "clusterToken",
    description: "NATS token for --cluster (better from the environment)",
    default: "",
    parse: nonEmpty,
    valueHint: "secret",
  },
  {
    key: "clusterSecret",
    description:
      "Session secret shared by every node, for a cluster whose NATS has no JetStream" +
      " (with JetStream the nodes agree on one themselves; better from the environment)",
    default: "",
    parse: token,
    valueHint: "secret",
  },
  {
    key: "logLevel",
    description: "error, warn, info, debug or trace",
    default: "info",
    parse: oneOf(LOG_LEVELS),
    legacyEnv: ["RUST_LOG"],
    valueHint: "level",
  },
  {
    key: "logFormat",
    description: "text or json",
    default: "text",
    parse: oneOf(["text", "json"] as const),
    valueHint: "format",
  },
  {
    key: "tokens",
    flag: "token",
    description: "Session token; repeat for several sessions, one per token",
    default: [],
    parse: token,
    valueHint: "token",
  },
  {
    key: "tokenFile",
    description: "File with one session token a line",
    default: "",
    parse: nonEmpty,
    valueHint: "file",
  },
  {
    key: "allow",
    description: "Only these address ranges may connect (CIDR, IPv4 or IPv6); repeatable",
    default: [],
    parse: cidr,
    valueHint: "cidr",
  },
  {
    key: "deny",
    description: "These address ranges are closed at once (CIDR); repeatable, beats --allow",
    default: [],
    parse: cidr,
    valueHint: "cidr",
  },
  {
    key: "stateReset",
    description: "Discard the history database in --state-dir at start-up",
    default: false,
    parse: yesNo,
  },
];

/** One row of the relay's table, for a sub-command that reads the same option. */
export function option<K extends keyof RelayConfig>(key: K): OptionSpec<RelayConfig, K> {
  return OPTIONS.find((o) => o.key === key) as unknown as OptionSpec<RelayConfig, K>;
}

function baseName(key: string): string {
  return key.endsWith("Ms") ? key.slice(0, -2) : key;
}

export function flagName(key: string): string {
  return baseName(key).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `SOVA_RELAY_${flagName(key).replace(/-/g, "_").toUpperCase()}`;
}

type AnyRow = OptionSpec<Record<string, unknown>, string>;
const rowsOf = <C>(table: OptionTable<C>) => table as unknown as readonly AnyRow[];
const flagOf = (o: AnyRow) => o.flag ?? flagName(o.key);

/** citty's arg definitions for a table. No defaults: citty would report them as given, hiding the environment. */
export function argsDef<C>(table: OptionTable<C>): ArgsDef {
  const def: ArgsDef = {};
  for (const o of rowsOf(table)) {
    const unset = Array.isArray(o.default) || o.default === null || o.default === "" || o.default === false;
    const shown = unset ? "" : `default ${o.default}; `;
    const env = Array.isArray(o.default) ? `${envName(o.key)}, comma-separated` : envName(o.key);
    const description = `${o.description} [${shown}env ${env}]`;
    def[flagOf(o)] =
      typeof o.default === "boolean"
        ? { type: "boolean", description }
        : { type: "string", description, valueHint: o.valueHint };
  }
  return def;
}

export type Env = Record<string, string | undefined>;

/**
 * citty keeps only the last of a repeated flag (it calls node:util's parseArgs
 * without `multiple`, and its arg definitions have no way to ask for it), so
 * the values of list flags are collected here from the raw arguments, skipping
 * the values of the other flags the way citty does.
 */
function repeated(rawArgs: readonly string[], rows: readonly AnyRow[]): Map<string, string[]> {
  const lists = new Set(rows.filter((o) => Array.isArray(o.default)).map(flagOf));
  const valued = new Set(rows.filter((o) => typeof o.default !== "boolean").map(flagOf));
  const found = new Map<string, string[]>();
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const value = eq === -1 ? (valued.has(name) ? rawArgs[++i] : undefined) : arg.slice(eq + 1);
    if (lists.has(name) && value !== undefined) found.set(name, [...(found.get(name) ?? []), value]);
  }
  return found;
}

/** citty accepts any flag and any positional; the relay refuses both, naming the first. */
function checkKnown(args: ParsedArgs, rows: readonly AnyRow[]): void {
  const known = new Set(["_"]);
  for (const o of rows) {
    const flag = flagOf(o);
    known.add(flag).add(flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
  }
  const unknown = Object.keys(args).find((k) => !known.has(k));
  if (unknown !== undefined) throw new RelayError("E_CONFIG", `unknown option '--${unknown}' (see --help)`);
  const extra = args._[0];
  if (extra !== undefined)
    throw new RelayError("E_CONFIG", `unexpected argument '${extra}' (options start with --; see --help)`);
}

const needsValue = (flag: string) => new RelayError("E_CONFIG", `option --${flag} needs a value`);

/** One option's value: flags beat `SOVA_RELAY_*`, which beats the seed's names, which beat defaults. */
function optionValue(o: AnyRow, given: unknown, env: Env): unknown {
  const flag = flagOf(o);
  if (typeof given === "boolean") {
    if (typeof o.default !== "boolean") throw needsValue(flag); // `--no-port`
    return given;
  }
  if (given === "") throw needsValue(flag); // citty's value for a flag given none
  if (Array.isArray(given)) return given.map((v: string) => o.parse(v, flag));
  if (typeof given === "string") return o.parse(given, flag);
  const name = [envName(o.key), ...(o.legacyEnv ?? [])].find((n) => env[n] !== undefined && env[n] !== "");
  if (name === undefined) return o.default;
  const from = `${flag} (from ${name})`;
  if (name === "RUST_LOG") return rustLogLevel(env[name]!, from);
  if (!Array.isArray(o.default)) return o.parse(env[name]!, from);
  return env[name]!.split(",")
    .filter((item) => item.trim() !== "")
    .map((item) => o.parse(item, from));
}

/** The values of a table's options, from citty's parsed arguments and the environment. */
export function resolveOptions<C>(
  table: OptionTable<C>,
  args: ParsedArgs,
  rawArgs: readonly string[],
  env: Env = process.env,
): C {
  const rows = rowsOf(table);
  checkKnown(args, rows);
  const lists = repeated(rawArgs, rows);
  const out: Record<string, unknown> = {};
  for (const o of rows) {
    const value = optionValue(o, Array.isArray(o.default) ? lists.get(flagOf(o)) : args[flagOf(o)], env);
    // The one place where seconds become milliseconds.
    out[o.key] = o.key.endsWith("Ms") && typeof value === "number" ? value * 1000 : value;
  }
  return out as C;
}

function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new RelayError("E_CONFIG", `cannot read --token-file '${path}' (${code})`, { cause: error });
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

export const MIN_TOKEN_LENGTH = 16;

/**
 * Tokens a guesser could find: fewer than 16 characters, or fewer than 8
 * different ones. 16 random base64 characters are 96 bits, 16 hex digits 64;
 * with the failed-registration budget (about 10 guesses a minute per address)
 * either outlasts any concert. The message never repeats the token.
 */
function checkTokenStrength(token: string, what = "a session token"): void {
  const chars = [...token];
  if (chars.length < MIN_TOKEN_LENGTH || new Set(chars).size < 8) {
    throw new RelayError(
      "E_CONFIG",
      `${what} is too easy to guess (${chars.length} characters; at least ${MIN_TOKEN_LENGTH},` +
        ` with at least 8 different ones): make one with \`openssl rand -base64 24\``,
    );
  }
}

export const RELAY_ARGS: ArgsDef = argsDef(OPTIONS);

/** The relay's configuration from citty's parsed arguments (the `serve` command) and the environment. */
export function configFromArgs(args: ParsedArgs, rawArgs: readonly string[], env: Env = process.env): RelayConfig {
  const config = resolveOptions(OPTIONS, args, rawArgs, env);
  if (config.tlsPort !== null && (config.tlsCert === "" || config.tlsKey === "")) {
    throw new RelayError("E_CONFIG", "--tls-port needs --tls-cert and --tls-key (PEM files)");
  }
  // `--port 0` turns the plain listener off only beside TLS; alone it is any free port.
  if (config.port === null && config.tlsPort === null) config.port = 0;
  const fromFile = config.tokenFile ? readTokenFile(config.tokenFile) : [];
  config.tokens = [...new Set([...config.tokens, ...fromFile])];
  for (const t of config.tokens) checkTokenStrength(t);
  // Whoever has it turns a session id on /status back into its token by guessing.
  if (config.clusterSecret) checkTokenStrength(config.clusterSecret, "--cluster-secret");
  if (config.maxConnectionsPerIp === 0) config.maxConnectionsPerIp = config.maxInstances + RECONNECT_ROOM;
  return config;
}

/** The same, from a command line (tests, and anything that starts a relay in-process). */
export function resolveConfig(argv: readonly string[], env: Env = process.env): RelayConfig {
  return configFromArgs(parseArgs([...argv], RELAY_ARGS), argv, env);
}
