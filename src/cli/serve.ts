/**
 * `sova-relay [options]` (the hidden `serve` command): the settings read, the
 * relay started by the composition root (src/host/relay.ts), signals handled,
 * and the "Listening" line written last.
 */
import { defineCommand } from "citty";
import { RELAY_ARGS, type RelayConfig, configFromArgs } from "../host/config.ts";
import { type RunningRelay, startRelay } from "../host/relay.ts";
import type { RunningServer } from "../host/start.ts";
import { type AuditFile, openAuditFile } from "../lib/audit.ts";
import { createLogger, type Logger } from "../lib/log.ts";

export const serveCommand = defineCommand({
  meta: { name: "serve", description: "Run the relay (what `sova-relay [options]` does)", hidden: true },
  args: RELAY_ARGS,
  async run({ args, rawArgs }) {
    const config = configFromArgs(args, rawArgs);
    const audit = config.auditLog ? openAuditFile(config.auditLog) : null;
    const log = createLogger({ level: config.logLevel, format: config.logFormat, audit: audit?.write });
    const relay = await startRelay(config, log);
    handleSignals(relay, audit, log);
    // Only now: whoever waits for this line may signal at once, and a SIGHUP before its
    // handler took the default action and killed the relay.
    logListening(config, relay.server, log);
  },
});

/** SIGTERM and SIGINT shut down (a second one exits at once); SIGHUP reloads. */
function handleSignals(relay: RunningRelay, audit: AuditFile | null, log: Logger): void {
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals > 1) {
      log.warn("shutdown_forced", `${signal} again: exiting now`);
      process.exit(1);
    }
    void relay.stop(signal).then(() => process.exit(0));
  };
  // SIGHUP: new certificate (Let's Encrypt renews every 60-90 days), rotated audit log, spectator keys.
  process.on("SIGHUP", () => {
    _reload(log, "SIGHUP: reload failed, keeping what was loaded", () => {
      audit?.reopen();
      relay.server.reloadTls();
    });
    _reload(log, "SIGHUP: spectator keys not reloaded, keeping those loaded", () => relay.server.watching.reload());
  });
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}

/** One reload step; a failure keeps what was loaded and says why. */
function _reload(log: Logger, failed: string, step: () => void): void {
  try {
    step();
  } catch (error) {
    const reason = (error as Error).message;
    log.error("reload_failed", `${failed}: ${reason}`, { reason });
  }
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
      ` ${config.tokens.length === 0 ? "one open session" : `${config.tokens.length} token-protected session${config.tokens.length === 1 ? "" : "s"}`})`,
    { host: server.host, port: server.port, tls_port: server.tlsPort, sessions: config.tokens.length },
  );
}
