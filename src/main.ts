#!/usr/bin/env bun
/**
 * The command line: `sova-relay [options]` runs the relay, `sova-relay health`
 * checks one. Errors a user can fix print one line and exit 2; nothing prints
 * a stack trace.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef } from "citty";
import { OPTIONS, VERSION, envName, flagName, resolveConfig } from "./config.ts";
import { RelayError } from "./errors.ts";
import { openAuditFile } from "./audit.ts";
import { healthCommand } from "./health.ts";
import { startHttp, type RunningHttp } from "./http.ts";
import { createLogger } from "./log.ts";
import { historyCommand } from "./history-cli.ts";
import { startServer } from "./server.ts";

const relayArgs: ArgsDef = Object.fromEntries([
  ...OPTIONS.map((o) => [
    flagName(o.key),
    {
      type: "string",
      description: `${o.description} [env ${envName(o.key)}]`,
      default: o.default === null || o.default === "" ? undefined : String(o.default),
      valueHint: o.valueHint,
    },
  ]),
  ["token", { type: "string", description: "Session token; repeat for several sessions [env SOVA_RELAY_TOKENS, comma-separated]" }],
  ["token-file", { type: "string", description: "File with one session token a line [env SOVA_RELAY_TOKEN_FILE]" }],
  ["allow", { type: "string", description: "Only these address ranges may connect (CIDR, IPv4 or IPv6); repeatable [env SOVA_RELAY_ALLOW, comma-separated]" }],
  ["state-reset", { type: "boolean", description: "Discard the history database in --state-dir at start-up [env SOVA_RELAY_STATE_RESET=1]" }],
  ["deny", { type: "string", description: "These address ranges are closed at once (CIDR); repeatable, beats --allow [env SOVA_RELAY_DENY, comma-separated]" }],
]);

const relayCommand = defineCommand({
  meta: { name: "sova-relay", version: VERSION, description: "Relay for Sova live-coding instances (health: check a running relay)" },
  args: relayArgs,
  async run({ rawArgs }) {
    const config = resolveConfig(rawArgs, process.env);
    const audit = config.auditLog ? openAuditFile(config.auditLog) : null;
    const log = createLogger({ level: config.logLevel, format: config.logFormat, audit: audit?.write });
    // Loaded only for --cluster: a relay alone never loads the NATS client.
    const cluster = config.cluster.length > 0 ? await import("./cluster/start.ts").then((m) => m.clusterFromConfig(config, log)) : undefined;
    let server;
    try {
      server = startServer(config, log, cluster);
    } catch (error) {
      if (error instanceof RelayError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      throw new RelayError("E_STARTUP", `cannot listen on ${config.host}:${config.port}${config.tlsPort !== null ? ` / TLS ${config.tlsPort}` : ""} (${code ?? (error as Error).message})`);
    }
    log.info("starting", `sova-relay ${VERSION} started`, { version: VERSION });
    let http: RunningHttp | null = null;
    if (config.httpPort !== 0) {
      const host = config.httpHost || config.host;
      const running = server;
      try {
        http = startHttp({ host, port: config.httpPort }, { relay: server.relay, version: VERSION, startedAt: Date.now(), stopping: () => running.stopping, history: server.history, cluster: cluster?.status }, log);
      } catch (error) {
        void server.shutdown("startup failed");
        throw new RelayError("E_STARTUP", `cannot listen for HTTP on ${host}:${config.httpPort} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
      }
      log.info("http_listening", `Status page on http://${host}:${http.port}/ (also /status, /healthz, /metrics)`, { host, port: http.port });
    }
    const where = [server.port !== null ? `${server.host}:${server.port}` : null, server.tlsPort !== null ? `${server.host}:${server.tlsPort} (TLS)` : null].filter(Boolean).join(" and ");
    log.info(
      "listening",
      `Listening on ${where} (max ${config.maxInstances} instances, rate limit ${config.rateLimit || "off"}/min, expected version ${config.expectedVersion}, ${config.tokens.length === 0 ? "one open session" : `${config.tokens.length} token-protected sessions`})`,
      { host: server.host, port: server.port, tls_port: server.tlsPort, sessions: config.tokens.length },
    );
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
    // SIGHUP: new certificate (Let's Encrypt renews every 60-90 days), rotated audit log.
    process.on("SIGHUP", () => {
      try {
        audit?.reopen();
        server.reloadTls();
      } catch (error) {
        log.error("reload_failed", `SIGHUP: reload failed, keeping what was loaded: ${(error as Error).message}`, { reason: (error as Error).message });
      }
    });
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
  },
});

const subCommands = { health: healthCommand, history: historyCommand } as const;

async function main(argv: string[]): Promise<void> {
  const sub = argv[0] !== undefined && argv[0] in subCommands ? subCommands[argv[0] as keyof typeof subCommands] : undefined;
  const cmd = sub ?? relayCommand;
  const rest = sub ? argv.slice(1) : argv;
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(await renderUsage(cmd as typeof relayCommand));
    return;
  }
  if (!sub && rest.length === 1 && (rest[0] === "--version" || rest[0] === "-v")) {
    console.log(VERSION);
    return;
  }
  await runCommand(cmd as typeof relayCommand, { rawArgs: rest });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof RelayError) {
    console.error(`sova-relay: ${error.message}`);
    process.exit(error.code === "E_CONFIG" ? 2 : 1);
  }
  console.error(`sova-relay: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
