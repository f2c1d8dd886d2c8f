/**
 * The `sova-relay tunnel` command line: flags checked here (a bad one is one line
 * and exit 2), then src/tunnel.ts does the work until SIGTERM/SIGINT.
 */
import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { RelayError } from "./errors.ts";
import { createLogger, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";
import { configError, parseTarget, startTunnel, type RunningTunnel } from "./tunnel.ts";

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) configError(`invalid value for --listen: '${text}' (expected HOST:PORT, e.g. 127.0.0.1:9090)`);
  return { host: m[1] ?? m[2]!, port };
}

function readCa(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    configError(`cannot read --ca '${path}' (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
  }
}

export const tunnelCommand = defineCommand({
  meta: {
    name: "tunnel",
    description: "Carry local Sova connections to a relay over a WebSocket (wss://host/relay) or TLS (tls://host:9443)",
  },
  args: {
    listen: { type: "string", description: "Where Sova connects, HOST:PORT", default: "127.0.0.1:9090" },
    to: { type: "string", description: "The relay: wss://host/relay, tls://host:9443 (also ws://, tcp:// for tests)" },
    ca: { type: "string", description: "PEM file of the CA to trust instead of the system's and Bun's roots (a private CA)" },
    "max-message-size": { type: "string", description: "Largest frame body sent over a WebSocket, in bytes (match the relay's)", default: "1048576" },
    "connect-timeout": { type: "string", description: "Seconds to wait for the relay", default: "10" },
    "log-level": { type: "string", description: "error, warn, info, debug or trace", default: "info" },
    "log-format": { type: "string", description: "text or json", default: "text" },
  },
  run({ args }) {
    if (!args.to) configError("tunnel needs --to (e.g. --to wss://relay.example.org/relay)");
    const target = parseTarget(String(args.to));
    const { host, port } = parseListen(String(args.listen));
    const level = String(args["log-level"]).toLowerCase() as LogLevel;
    if (!LOG_LEVELS.includes(level)) configError(`invalid value for --log-level: '${args["log-level"]}' (expected one of ${LOG_LEVELS.join(", ")})`);
    const format = String(args["log-format"]).toLowerCase() as LogFormat;
    if (format !== "text" && format !== "json") configError(`invalid value for --log-format: '${args["log-format"]}' (expected text or json)`);
    const maxMessageSize = Number(args["max-message-size"]);
    if (!Number.isInteger(maxMessageSize) || maxMessageSize < 64) configError(`invalid value for --max-message-size: '${args["max-message-size"]}' (expected a whole number of bytes, at least 64)`);
    const timeout = Number(args["connect-timeout"]);
    if (!Number.isFinite(timeout) || timeout <= 0) configError(`invalid value for --connect-timeout: '${args["connect-timeout"]}' (expected seconds > 0)`);
    const ca = args.ca ? readCa(String(args.ca)) : undefined;
    const log = createLogger({ level, format });
    let tunnel: RunningTunnel;
    try {
      tunnel = startTunnel({ listenHost: host, listenPort: port, target, ca, maxMessageSize, connectTimeoutMs: timeout * 1000 }, log);
    } catch (error) {
      throw new RelayError("E_STARTUP", `cannot listen on ${host}:${port} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    const plain = target.scheme === "tcp" || target.scheme === "ws" ? " (unencrypted: for loopback and tests)" : "";
    log.info("tunnel_listening", `Tunnel listening on ${host}:${tunnel.port}, carrying to ${target.shown}${plain}; point Sova at ${host}:${tunnel.port}`, {
      host,
      port: tunnel.port,
      target: target.shown,
    });
    const stop = (signal: string) => {
      log.info("tunnel_stopping", `${signal}: closing ${tunnel.connections} connections`, { connections: tunnel.connections });
      tunnel.stop();
      process.exit(0);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  },
});
