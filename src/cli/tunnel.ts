import { defineCommand } from "citty";
import { listenError } from "../lib/errors.ts";
import { option } from "../host/config.ts";
import { argsDef, type OptionTable, resolveOptions } from "../lib/options.ts";
import { createLogger, type LogFormat, type LogLevel } from "../lib/log.ts";
import { configError, parseTargets, startTunnel, type RunningTunnel } from "../tunnel/tunnel.ts";
import { readHostFile } from "../lib/files.ts";

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    configError(`invalid value for --listen: '${text}' (expected HOST:PORT, e.g. 127.0.0.1:9090)`);
  return { host: m[1] ?? m[2]!, port };
}

function readCa(path: string): string {
  return readHostFile(path, "--ca");
}

interface TunnelCliOptions {
  listen: string;
  to: string[];
  ca: string;
  maxMessageSize: number;
  connectTimeoutMs: number;
  holdBytes: number;
  upstreamTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** The tunnel's own rows, and the relay's for what they share (so a player's env and flags read the same). */
export const TUNNEL_OPTIONS: OptionTable<TunnelCliOptions> = [
  {
    key: "listen",
    description: "Where Sova connects, HOST:PORT",
    default: "127.0.0.1:9090",
    type: "text",
    valueHint: "host:port",
  },
  {
    key: "to",
    description:
      "The relay: wss://host/relay, tls://host:9443 (also ws://, tcp:// for tests); several for a cluster's nodes," +
      " tried in turn",
    default: [],
    type: "text",
    repeatable: true,
    valueHint: "url",
  },
  {
    key: "ca",
    description: "PEM file of the CA to trust instead of the system's and Bun's roots (a private CA)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "maxMessageSize",
    description: "Largest frame body sent over a WebSocket, in bytes (match the relay's)",
    default: 1_048_576,
    type: "integer",
    min: 64,
    max: 0xffffffff,
    unit: "bytes",
  },
  {
    key: "connectTimeoutMs",
    flag: "connect-timeout",
    description: "Seconds to wait for the relay",
    default: 10,
    type: "seconds",
    min: 0.001,
  },
  {
    key: "holdBytes",
    description: "Bytes of the player's edits held while the relay is out of reach (past it, Sova is told the truth)",
    default: 4_194_304,
    type: "integer",
    min: 1024,
    max: 1 << 30,
    unit: "bytes",
  },
  {
    key: "upstreamTimeoutMs",
    description: "Seconds of silence from the relay after which the connection is taken for lost and resumed",
    default: 3,
    type: "seconds",
    min: 0.1,
  },
  option("logLevel"),
  option("logFormat"),
];

export const tunnelCommand = defineCommand({
  meta: {
    name: "tunnel",
    description: "Carry local Sova connections to a relay over a WebSocket (wss://host/relay) or TLS (tls://host:9443)",
  },
  args: argsDef(TUNNEL_OPTIONS),
  run({ args, rawArgs }) {
    const o = resolveOptions(TUNNEL_OPTIONS, args, rawArgs);
    if (o.to.length === 0) configError("tunnel needs --to (e.g. --to wss://relay.example.org/relay)");
    const targets = parseTargets(o.to);
    const target = targets[0]!;
    const { host, port } = parseListen(o.listen);
    const ca = o.ca ? readCa(o.ca) : undefined;
    const log = createLogger({ level: o.logLevel, format: o.logFormat });
    let tunnel: RunningTunnel;
    try {
      tunnel = startTunnel(
        {
          listenHost: host,
          listenPort: port,
          targets,
          ca,
          maxMessageSize: o.maxMessageSize,
          connectTimeoutMs: o.connectTimeoutMs,
          maxHeldBytes: o.holdBytes,
          upstreamTimeoutMs: o.upstreamTimeoutMs,
        },
        log,
      );
    } catch (error) {
      throw listenError(error, { what: "", address: host, port, flag: "--listen" });
    }
    const plain = target.scheme === "tcp" || target.scheme === "ws" ? " (unencrypted: for loopback and tests)" : "";
    const more =
      targets.length > 1
        ? ` (then ${targets
            .slice(1)
            .map((t) => t.shown)
            .join(", ")})`
        : "";
    log.info(
      "tunnel_listening",
      `Tunnel listening on ${host}:${tunnel.port}, carrying to ${target.shown}${more}${plain};` +
        ` point Sova at ${host}:${tunnel.port}`,
      {
        host,
        port: tunnel.port,
        target: target.shown,
      },
    );
    const stop = (signal: string) => {
      log.info("tunnel_stopping", `${signal}: closing ${tunnel.connections} connections`, {
        connections: tunnel.connections,
      });
      tunnel.stop();
      process.exit(0);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  },
});
