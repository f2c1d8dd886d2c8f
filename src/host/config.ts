import { parseArgs, type ArgsDef, type ParsedArgs } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { RelayError } from "../lib/errors.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../lib/log.ts";
import { type Cidr, parseCidr } from "../lib/cidr.ts";
import { argsDef, type Env, envNamesOf, type OptionSpec, type OptionTable, resolveOptions } from "../lib/options.ts";
import { SOVA_PROTOCOL_VERSION } from "../protocol/version.ts";
import { readHostFile } from "../lib/files.ts";

/** The relay's own version (what --version says); not what Sova instances must report (SOVA_PROTOCOL_VERSION). */
export const VERSION: string = pkg.version;

const CIDR = "CIDR, IPv4 or IPv6";

export interface RelayConfig {
  host: string;
  /** 0: any free port; null: no plain listener (`--port 0` beside `--tls-port`). */
  port: number | null;
  /** Empty: the same as `host`. */
  httpHost: string;
  /** 0: any free port; null: no HTTP listener (`--http-port 0`). */
  httpPort: number | null;
  maxEventSubscribers: number;
  /** Addresses whose status page always gets an /events slot, beside loopback. */
  operator: Cidr[];
  /** Empty: `spectators` in --state-dir, when there is one. */
  spectatorFile: string;
  maxSpectators: number;
  maxSpectatorsPerIp: number;
  maxSpectatorsPerSession: number;
  maxInstances: number;
  /** 0 at parse time: --max-instances shared evenly between the sessions (tokens). */
  maxInstancesPerSession: number;
  maxInstancesPerIp: number;
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
  /** How long a tunnel's player stays in its session after losing its connection (docs/resume.md); 0: off. */
  resumeWindowMs: number;
  resumeBufferBytes: number;
  /** Proxies allowed to name the client in X-Forwarded-For / Forwarded on the WebSocket endpoint. */
  trustProxy: Cidr[];
  /** Web origins (scheme://host[:port]) whose pages may open /relay, beside the relay's own. */
  allowOrigin: string[];
  /** Host names the HTTP endpoints answer for, beside IP addresses, localhost and dotless names. */
  allowHost: string[];
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

/** RUST_LOG may be `debug` or `sova_relay=debug,tokio=warn`: take our level, or the global one. */
function rustLogLevel(raw: string, flag: string): LogLevel {
  const parts = raw.split(",").map((p) => p.trim().toLowerCase());
  const ours = parts.find((p) => p.startsWith("sova_relay="))?.split("=")[1];
  const global = parts.find((p) => !p.includes("="));
  const level = (ours ?? global ?? "info") === "off" ? "error" : (ours ?? global ?? "info");
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag}: '${raw}' (expected one of ${LOG_LEVELS.join(", ")})`,
    );
  return level as LogLevel;
}

function cidr(raw: string): Cidr {
  return parseCidr(raw.trim());
}

const MAX_FRAME = 0xffffffff;
/**
 * Connections per address beyond --max-instances-per-ip by default: instances reconnecting while their old
 * connection is still being noticed as gone.
 */
const RECONNECT_ROOM = 8;

/** An instance slot per address by default: one ensemble of 20 behind one venue's NAT. */
const INSTANCES_PER_IP = 20;

/** `https://host[:port]` as a browser sends it in `Origin` (a list row). */
function webOrigin(raw: string, flag: string): string {
  const t = raw.trim().toLowerCase();
  let ok = false;
  try {
    const u = new URL(t);
    ok = (u.protocol === "https:" || u.protocol === "http:") && u.origin === t;
  } catch {
    ok = false;
  }
  if (!ok)
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag}: '${raw}' (expected an origin such as https://example.org: scheme, host, port)`,
    );
  return t;
}

/** A host name as it comes in `Host`, without the port (a list row). */
function hostName(raw: string, flag: string): string {
  const t = raw.trim().toLowerCase().replace(/\.$/, "");
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(t) || t.length > 253)
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag}: '${raw}' (expected a host name such as relay.example.org, without a port)`,
    );
  return t;
}

/** Shown in logs and /status, carried in every frame sent to the cluster: short, printable. */
function nodeName(raw: string, flag: string): string {
  const t = raw.trim();
  if (t === "" || t.length > 64 || Buffer.byteLength(t) > 200 || /\p{Cc}/u.test(t))
    throw new RelayError("E_CONFIG", `invalid value for --${flag}: '${raw}' (expected 1 to 64 printable characters)`);
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
      `invalid value for --${flag.split(" ")[0]}: expected nats://HOST:PORT or tls://HOST:PORT, comma-separated for several`,
    );
  return u;
}

export const OPTIONS: OptionTable<RelayConfig> = [
  { key: "host", description: "Address to listen on", default: "0.0.0.0", type: "text", valueHint: "addr" },
  {
    key: "port",
    description: "TCP port for Sova instances (0 or any: any free port; 0 beside --tls-port: none)",
    default: 9090,
    type: "port",
    zero: "off",
  },
  {
    key: "httpHost",
    description:
      "Address for the status page and metrics; they need no login," +
      " so loopback unless you choose (0.0.0.0: everywhere)",
    default: "127.0.0.1",
    type: "text",
    empty: "allowed",
    valueHint: "addr",
  },
  {
    key: "httpPort",
    description: "Port for the status page, /status, /healthz and /metrics (0: off; any: any free port)",
    default: 8080,
    type: "port",
    zero: "off",
  },
  {
    key: "maxEventSubscribers",
    description: "Status pages following /events at once; past it, 503",
    default: 32,
    type: "integer",
    min: 1,
    max: 100_000,
  },
  {
    key: "operator",
    description:
      "Addresses of whoever runs the relay: beside loopback, their status page always gets a live /events slot",
    default: [],
    type: "custom",
    accepts: CIDR,
    parse: cidr,
    repeatable: true,
    valueHint: "cidr",
  },
  {
    key: "spectatorFile",
    description:
      "Spectator key digests, one session a line, written by `sova-relay watch enable` and reloaded on SIGHUP" +
      " (default: spectators in --state-dir)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "maxSpectators",
    description: "Spectator pages following /watch/KEY/events at once, in the whole relay; past it, 503",
    default: 64,
    type: "integer",
    min: 1,
    max: 100_000,
  },
  {
    key: "maxSpectatorsPerIp",
    description: "Spectator pages from one address (IPv6: per /64)",
    default: 8,
    type: "integer",
    min: 1,
    max: 100_000,
  },
  {
    key: "maxSpectatorsPerSession",
    description: "Spectator pages of one session",
    default: 48,
    type: "integer",
    min: 1,
    max: 100_000,
  },
  {
    key: "maxInstances",
    description: "Registered instances allowed in the whole relay",
    default: 40,
    type: "integer",
    min: 1,
    max: 1_000_000,
    legacyEnv: ["SOVA_MAX_INSTANCES"],
  },
  {
    key: "maxInstancesPerSession",
    description:
      "Registered instances one session may hold on this relay (0: --max-instances shared evenly between the tokens'" +
      " sessions), so one ensemble cannot take another's slots",
    default: 0,
    type: "integer",
    min: 0,
    max: 1_000_000,
  },
  {
    key: "maxInstancesPerIp",
    description:
      "Registered instances from one address, IPv6 counted per /64 (the default fits an ensemble of 20 behind one NAT)",
    default: INSTANCES_PER_IP,
    type: "integer",
    min: 1,
    max: 1_000_000,
  },
  {
    key: "rateLimit",
    description: "Messages per instance per 60 s window (0: no limit)",
    default: 1000,
    type: "integer",
    min: 0,
    max: 1_000_000_000,
    legacyEnv: ["SOVA_RATE_LIMIT"],
  },
  {
    key: "maxMessageSize",
    description: "Largest frame body accepted, in bytes",
    default: 1_048_576,
    type: "integer",
    min: 64,
    max: MAX_FRAME,
    unit: "bytes",
  },
  {
    key: "maxPendingBytes",
    description: "Unsent bytes held for one instance before it is cut as a slow consumer",
    default: 8_388_608,
    type: "integer",
    min: 1024,
    max: Number.MAX_SAFE_INTEGER,
    unit: "bytes",
  },
  {
    key: "maxTotalPendingBytes",
    description:
      "Unsent bytes held for all connections together; past it, those that stopped reading are cut," +
      " senders of sessions that fall behind are slowed, and after 3 s the largest holders are cut",
    default: 33_554_432,
    type: "integer",
    min: 1024,
    max: Number.MAX_SAFE_INTEGER,
    unit: "bytes",
  },
  {
    key: "handshakeTimeoutMs",
    description: "Seconds a new connection has to send RegisterInstance",
    default: 10,
    type: "seconds",
    min: 0.05,
  },
  {
    key: "idleTimeoutMs",
    description: "Seconds of silence before a connection is closed (0: never)",
    default: 0,
    type: "seconds",
    min: 0,
  },
  {
    key: "shutdownTimeoutMs",
    description: "Seconds to flush queued frames on SIGTERM/SIGINT",
    default: 5,
    type: "seconds",
    min: 0,
  },
  {
    key: "expectedVersion",
    description: "Sova version instances must report (Sova's protocol version, not the relay's)",
    default: SOVA_PROTOCOL_VERSION,
    type: "text",
    valueHint: "version",
  },
  {
    key: "rateLimitBytes",
    description: "Bytes per instance per 60 s window (0: no limit)",
    default: 67_108_864,
    type: "integer",
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    unit: "bytes",
  },
  {
    key: "tlsPort",
    description: "TLS port beside the plain one, same sessions (unset: no TLS; 0 or any: any free port)",
    default: null,
    type: "port",
    zero: "any",
  },
  {
    key: "tlsCert",
    description: "TLS certificate chain, PEM (reloaded on SIGHUP)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "tlsKey",
    description: "TLS private key, PEM (reloaded on SIGHUP)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "maxConnectionsPerIp",
    description:
      `Open connections allowed from one address, IPv6 counted per /64` +
      ` (0: --max-instances-per-ip + ${RECONNECT_ROOM}, so a whole ensemble behind one NAT can join and reconnect)`,
    default: 0,
    type: "integer",
    min: 0,
    max: 1_000_000,
  },
  {
    key: "maxFailedRegistrations",
    description:
      "Failed registrations (bad token, junk) one address may make in a burst, earned back at this many a minute",
    default: 10,
    type: "integer",
    min: 1,
    max: 1_000_000,
  },
  {
    key: "failedRegistrationCooldownMs",
    description: "Seconds every registration from an address is refused once its failed registrations are used up",
    default: 10,
    type: "seconds",
    min: 0,
  },
  {
    key: "auditLog",
    description: "Also append security events (JSON lines) to this file; reopened on SIGHUP",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "history",
    description: "Updates kept per session and replayed to newcomers (0: off)",
    default: 0,
    type: "integer",
    min: 0,
    max: 10_000_000,
  },
  {
    key: "historyBytes",
    description: "Bytes of history kept per session",
    default: 16_777_216,
    type: "integer",
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    unit: "bytes",
  },
  {
    key: "historyAgeMs",
    description: "Seconds an update stays in history (0: no limit)",
    default: 0,
    type: "seconds",
    min: 0,
  },
  {
    key: "stateDir",
    description: "Directory for the history database (SQLite); history survives restarts",
    default: "",
    type: "text",
    valueHint: "dir",
  },
  {
    key: "nudgeInterval",
    description:
      "Milliseconds after which a registered instance sent nothing gets a Pong," +
      " so today's Sova client's waiting edits leave (0: off)",
    default: 40,
    type: "integer",
    min: 0,
    max: 3_600_000,
    unit: "milliseconds",
  },
  {
    key: "handshakeMaxBytes",
    description: "Largest frame accepted before registration, in bytes",
    default: 4096,
    type: "integer",
    min: 64,
    max: MAX_FRAME,
    unit: "bytes",
  },
  {
    key: "maxHandshakes",
    description: "Connections that have not registered yet, in the whole relay",
    default: 128,
    type: "integer",
    min: 1,
    max: 1_000_000,
  },
  {
    key: "maxHandshakesPerIp",
    description: "Connections that have not registered yet, per address (IPv6: per /64)",
    default: 8,
    type: "integer",
    min: 1,
    max: 1_000_000,
  },
  {
    key: "maxRegistrationsPerIp",
    description: "Registrations per address (IPv6: per /64) in any 60 s",
    default: 60,
    type: "integer",
    min: 1,
    max: 1_000_000,
  },
  {
    key: "replayTimeoutMs",
    description: "Seconds a newcomer has to take its registration response and session history before it is cut",
    default: 30,
    type: "seconds",
    min: 1,
  },
  {
    key: "resumeWindowMs",
    description:
      "Seconds a player behind `sova-relay tunnel` stays in its session after losing its connection, its missed" +
      " updates kept for it (0: off; docs/resume.md)",
    default: 30,
    type: "seconds",
    min: 0,
  },
  {
    key: "resumeBufferBytes",
    description: "Bytes of updates kept per session while one of its players may resume",
    default: 8_388_608,
    type: "integer",
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    unit: "bytes",
  },
  {
    key: "trustProxy",
    description:
      "Reverse proxies whose X-Forwarded-For / Forwarded name the client on /relay, /watch/ and the status page" +
      " (default: none; the direct peer is the client)",
    default: [],
    type: "custom",
    accepts: CIDR,
    parse: cidr,
    repeatable: true,
    valueHint: "cidr",
  },
  {
    key: "allowOrigin",
    description:
      "Web pages allowed to open /relay beside the relay's own; an upgrade carrying any other Origin is refused," +
      " so a page a player visits cannot join a session (Sova and the tunnel send none)",
    default: [],
    type: "custom",
    accepts: "an origin such as https://example.org",
    parse: webOrigin,
    repeatable: true,
    valueHint: "origin",
  },
  {
    key: "allowHost",
    description:
      "Host names the status page, /status, /events and /metrics answer for, beside IP addresses, localhost and" +
      " names without a dot (a page from another name is refused, so DNS rebinding cannot read them)",
    default: [],
    type: "custom",
    accepts: "a host name such as relay.example.org, without a port",
    parse: hostName,
    repeatable: true,
    valueHint: "name",
  },
  {
    key: "cluster",
    description: "Join a cluster of relays over NATS, through these NATS servers",
    default: [],
    type: "custom",
    accepts: "nats://HOST:PORT or tls://HOST:PORT",
    parse: natsUrl,
    repeatable: true,
    valueHint: "url",
  },
  {
    key: "nodeName",
    description: "This relay's name in the cluster (default: hostname and a random suffix)",
    default: "",
    type: "custom",
    accepts: "1 to 64 printable characters",
    parse: nodeName,
    valueHint: "name",
  },
  {
    key: "clusterCreds",
    description: "NATS credentials file (.creds) for --cluster",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "clusterCa",
    description: "CA certificate (PEM) for a NATS server with TLS",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "clusterUser",
    description: "NATS user for --cluster (better from the environment)",
    default: "",
    type: "text",
    valueHint: "user",
  },
  {
    key: "clusterPassword",
    description: "NATS password for --cluster (better from the environment)",
    default: "",
    type: "secret",
    valueHint: "secret",
  },
  {
    key: "clusterToken",
    description: "NATS token for --cluster (better from the environment)",
    default: "",
    type: "secret",
    valueHint: "secret",
  },
  {
    key: "clusterSecret",
    description:
      "Session secret shared by every node, for a cluster whose NATS has no JetStream" +
      " (with JetStream the nodes agree on one themselves; better from the environment)",
    default: "",
    type: "secret",
    valueHint: "secret",
  },
  {
    key: "logLevel",
    description: "How much to log",
    default: "info",
    type: "choice",
    choices: LOG_LEVELS,
    legacyParse: rustLogLevel,
    legacyEnv: ["RUST_LOG"],
    valueHint: "level",
  },
  {
    key: "logFormat",
    description: "Log lines as text or as JSON objects",
    default: "text",
    type: "choice",
    choices: ["text", "json"],
    valueHint: "format",
  },
  {
    key: "tokens",
    flag: "token",
    description: "Session token; one session per token",
    default: [],
    type: "secret",
    repeatable: true,
    valueHint: "token",
  },
  {
    key: "tokenFile",
    description: "File with one session token a line",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "allow",
    description: "Only these address ranges may connect",
    default: [],
    type: "custom",
    accepts: CIDR,
    parse: cidr,
    repeatable: true,
    valueHint: "cidr",
  },
  {
    key: "deny",
    description: "These address ranges are closed at once; beats --allow",
    default: [],
    type: "custom",
    accepts: CIDR,
    parse: cidr,
    repeatable: true,
    valueHint: "cidr",
  },
  {
    key: "stateReset",
    description: "Discard the history database in --state-dir at start-up",
    default: false,
    type: "switch",
  },
];

/** One row of the relay's table, for a sub-command that reads the same option. */
export function option<K extends keyof RelayConfig>(key: K): OptionSpec<RelayConfig, K> {
  return OPTIONS.find((o) => o.key === key) as unknown as OptionSpec<RelayConfig, K>;
}

function readTokenFile(path: string): string[] {
  const tokens = readHostFile(path, "--token-file")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  // A file meant to hold the tokens but empty (a failed generator, a truncated copy) must not open the relay.
  if (tokens.length === 0)
    throw new RelayError("E_CONFIG", `--token-file ${path} holds no token (one a line; # starts a comment)`);
  // `a,b` is two tokens in SOVA_RELAY_TOKENS and --token; here it would be one, which nobody could give.
  const joined = tokens.findIndex((t) => t.includes(","));
  if (joined !== -1)
    throw new RelayError("E_CONFIG", `--token-file ${path}: a token holds a comma (one token a line, no commas)`);
  return tokens;
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

/** Every environment name the relay reads (ours and the seed's). */
export const RELAY_ENV: readonly string[] = envNamesOf(OPTIONS);

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
  if (config.maxInstancesPerSession === 0)
    config.maxInstancesPerSession = Math.ceil(config.maxInstances / Math.max(1, config.tokens.length));
  if (config.maxConnectionsPerIp === 0) config.maxConnectionsPerIp = config.maxInstancesPerIp + RECONNECT_ROOM;
  return config;
}

/** The same, from a command line (tests, and anything that starts a relay in-process). */
export function resolveConfig(argv: readonly string[], env: Env = process.env): RelayConfig {
  return configFromArgs(parseArgs([...argv], RELAY_ARGS), argv, env);
}
