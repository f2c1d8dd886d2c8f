#!/usr/bin/env bun
/**
 * The command line: `sova-relay [options]` runs the relay, `sova-relay health`
 * checks one. Errors a user can fix print one line and exit 2; nothing prints
 * a stack trace.
 */
import { type CommandDef, defineCommand, parseArgs, renderUsage, runCommand } from "citty";
import { type AuditFile, openAuditFile } from "./lib/audit.ts";
import { RELAY_ARGS, type RelayConfig, VERSION, configFromArgs } from "./host/config.ts";
import { RelayError } from "./lib/errors.ts";
import { type CommandName, checkCommandEnvironment } from "./cli/environment.ts";
import { healthCommand } from "./cli/health.ts";
import { exportCommand, historyCommand } from "./cli/history.ts";
import { type RunningHttp, startHttp } from "./http/server.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { createWebSocketEndpoint } from "./transport/websocket.ts";
import { type RunningServer, startServer } from "./host/start.ts";
import type { ClusterNode } from "./cluster/node.ts";
import { replayCommand } from "./cli/replay.ts";
import { forStream } from "./cli/terminal.ts";
import { tunnelCommand } from "./cli/tunnel.ts";
import { watchCommand } from "./cli/watch.ts";
import { versionLine } from "./lib/version.ts";

const serveCommand = defineCommand({
  meta: { name: "serve", description: "Run the relay (what `sova-relay [options]` does)", hidden: true },
  args: RELAY_ARGS,
  async run({ args, rawArgs }) {
    const config = configFromArgs(args, rawArgs);
    const audit = config.auditLog ? openAuditFile(config.auditLog) : null;
    const log = createLogger({ level: config.logLevel, format: config.logFormat, audit: audit?.write });
    // Loaded only for --cluster: a relay alone never loads the NATS client.
    const cluster =
      config.cluster.length > 0
        ? await import("./host/cluster.ts").then((m) => m.clusterFromConfig(config, log))
        : undefined;
    const server = listen(config, log, cluster);
    log.info("starting", `sova-relay ${VERSION} started`, { version: VERSION });
    const http = config.httpPort !== null ? serveHttp(config, config.httpPort, server, cluster, log) : null;
    handleSignals(server, http, audit, log);
    // Only now: whoever waits for this line may signal at once, and a SIGHUP before its
    // handler took the default action and killed the relay.
    logListening(config, server, log);
  },
});

/** The relay's listeners, or one line saying which address could not be had. */
function listen(config: RelayConfig, log: Logger, cluster: ClusterNode | undefined): RunningServer {
  try {
    return startServer(config, log, cluster);
  } catch (error) {
    if (error instanceof RelayError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${config.host}:${config.port}${config.tlsPort !== null ? ` / TLS ${config.tlsPort}` : ""}`;
    throw new RelayError("E_STARTUP", `cannot listen on ${where} (${code ?? (error as Error).message})`, {
      cause: error,
    });
  }
}

/** The HTTP listener (status, metrics, spectators, WebSocket); the relay is shut down if it cannot listen. */
function serveHttp(
  config: RelayConfig,
  port: number,
  server: RunningServer,
  cluster: ClusterNode | undefined,
  log: Logger,
): RunningHttp {
  const websocket = createWebSocketEndpoint(config, server, log);
  const host = config.httpHost || config.host;
  let http: RunningHttp;
  try {
    http = startHttp(
      {
        host,
        port,
        maxEventSubscribers: config.maxEventSubscribers,
        websocket,
        operator: config.operator,
        trustProxy: config.trustProxy,
        allowHost: config.allowHost,
        watch: {
          watcher: server.watching.watcher,
          keys: server.watching.keys,
          maxSpectators: config.maxSpectators,
          maxSpectatorsPerAddress: config.maxSpectatorsPerIp,
          maxSpectatorsPerSession: config.maxSpectatorsPerSession,
        },
      },
      {
        relay: server.relay,
        version: VERSION,
        startedAt: Date.now(),
        stopping: () => server.stopping,
        history: server.history,
        cluster: cluster?.status,
        storage: () => server.storage,
        descriptors: () => server.descriptors.stats,
      },
      log,
    );
    server.descriptors.watch(http.port);
  } catch (error) {
    void server.shutdown("startup failed");
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new RelayError("E_STARTUP", `cannot listen for HTTP on ${host}:${port} (${why})`, { cause: error });
  }
  log.info(
    "http_listening",
    `Status page on http://${host}:${http.port}/` +
      ` (also /status, /healthz, /metrics; instances over WebSocket on /relay)`,
    { host, port: http.port },
  );
  return http;
}

/** SIGTERM and SIGINT shut down (a second one exits at once); SIGHUP reloads. */
function handleSignals(server: RunningServer, http: RunningHttp | null, audit: AuditFile | null, log: Logger): void {
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals > 1) {
      log.warn("shutdown_forced", `${signal} again: exiting now`);
      process.exit(1);
    }
    void server.shutdown(signal).then(() => {
      http?.stop();
      process.exit(0);
    });
  };
  // SIGHUP: new certificate (Let's Encrypt renews every 60-90 days), rotated audit log, spectator keys.
  process.on("SIGHUP", () => {
    try {
      audit?.reopen();
      server.reloadTls();
    } catch (error) {
      log.error("reload_failed", `SIGHUP: reload failed, keeping what was loaded: ${(error as Error).message}`, {
        reason: (error as Error).message,
      });
    }
  });
  process.on("SIGHUP", () => {
    try {
      server.watching.reload();
    } catch (error) {
      log.error(
        "reload_failed",
        `SIGHUP: spectator keys not reloaded, keeping those loaded: ${(error as Error).message}`,
        {
          reason: (error as Error).message,
        },
      );
    }
  });
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

function logListening(config: RelayConfig, server: RunningServer, log: Logger): void {
  const where = [
    server.port !== null ? `${server.host}:${server.port}` : null,
    server.tlsPort !== null ? `${server.host}:${server.tlsPort} (TLS)` : null,
  ]
    .filter(Boolean)
    .join(" and ");
  log.info(
    "listening",
    `Listening on ${where} (max ${config.maxInstances} instances,` +
      ` rate limit ${config.rateLimit || "off"}/min, expected version ${config.expectedVersion},` +
      ` ${config.tokens.length === 0 ? "one open session" : `${config.tokens.length} token-protected sessions`})`,
    { host: server.host, port: server.port, tls_port: server.tlsPort, sessions: config.tokens.length },
  );
}

const subCommands: Record<string, CommandDef> = {
  serve: serveCommand,
  health: healthCommand,
  history: historyCommand,
  tunnel: tunnelCommand,
  watch: watchCommand,
  replay: replayCommand,
};

/**
 * `sova-relay [options]` runs the relay; `sova-relay <command> ...` one of the
 * others. The relay's args are declared here too, so that citty skips their
 * values while it looks for a command name.
 */
const mainCommand = defineCommand({
  meta: { name: "sova-relay", version: VERSION, description: "Relay for Sova live-coding instances" },
  args: RELAY_ARGS,
  subCommands,
  default: "serve",
  setup({ args, rawArgs }) {
    // Otherwise citty would take the value of a misspelt flag for a command: `--prot 9090` is "unknown command 9090".
    const first = args._[0];
    if (first !== undefined && !(first in subCommands)) configFromArgs(args, rawArgs);
  },
});

/** The command `--help` is about, and its parent: follow the command names given, as citty does. */
function commandFor(argv: string[]): [CommandDef, CommandDef | undefined] {
  let cmd: CommandDef = mainCommand;
  let parent: CommandDef | undefined;
  let rest = argv;
  for (;;) {
    const subs = cmd.subCommands as Record<string, CommandDef> | undefined;
    const name = parseArgs(rest, (cmd.args ?? {}) as typeof RELAY_ARGS)._[0];
    if (!subs || name === undefined || !(name in subs)) return [cmd, parent];
    parent = cmd;
    cmd = subs[name]!;
    rest = rest.slice(rest.indexOf(name) + 1);
  }
}

const HELP_AND_VERSION =
  "  --help, -h       this text; after a command, that command's (sova-relay tunnel --help)\n" +
  "  --version, -v    the version, commit and build target\n";

/** Whose environment names the command reads: the relay's for `sova-relay [options]` and `serve`. */
const ENV_OF: ReadonlyMap<CommandDef, CommandName> = new Map<CommandDef, CommandName>([
  [mainCommand, "relay"],
  [serveCommand, "relay"],
  [healthCommand, "health"],
  [historyCommand, "history clear"],
  [tunnelCommand, "tunnel"],
  [exportCommand, "history export"],
  [watchCommand, "watch"],
  [replayCommand, "replay"],
]);

async function main(argv: string[]): Promise<void> {
  const [command, parent] = commandFor(argv);
  if (argv.includes("--help") || argv.includes("-h")) {
    // citty lists neither flag: they are answered here, before any command runs.
    const own = command === mainCommand ? HELP_AND_VERSION : "  --help, -h    this text\n";
    console.log(forStream(`${await renderUsage(command, parent)}\n\nEVERY COMMAND\n\n${own}`, process.stdout));
    return;
  }
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
    console.log(versionLine());
    return;
  }
  // Before anything runs: a mistyped setting must stop the command, never leave it running without it.
  checkCommandEnvironment(ENV_OF.get(command) ?? ENV_OF.get(parent!) ?? "relay");
  await runCommand(mainCommand, { rawArgs: argv });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof RelayError) {
    console.error(forStream(`sova-relay: ${error.message}`, process.stderr));
    process.exit(error.code === "E_CONFIG" ? 2 : 1);
  }
  // citty's own usage errors (an unknown command): the user's to fix, like a bad option.
  const usage = error instanceof Error && error.name === "CLIError";
  console.error(forStream(`sova-relay: ${error instanceof Error ? error.message : String(error)}`, process.stderr));
  process.exit(usage ? 2 : 1);
});
