/**
 * Other ways for an instance to reach a relay, as `StartRelay` wrappers: the
 * relay is started with its HTTP listener, and the handle's `port` becomes a
 * `sova-relay tunnel` (in this process) carrying plain TCP to the relay's
 * WebSocket endpoint or TLS port. Any suite written against `port` (the
 * contract suite) then runs unchanged over that transport.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../../src/lib/log.ts";
import { decodeMessage, encodeMessage, type Message } from "../../src/protocol/messages.ts";
import { parseTarget, startTunnel, type RunningTunnel, type TunnelOptions } from "../../src/tunnel/tunnel.ts";
import { logWatcher, type RelayHandle, type StartRelay } from "./relay.ts";

import { TLS_DIR } from "./paths.ts";

export { TLS_DIR };
export const TEST_CA = readFileSync(join(TLS_DIR, "test-a.crt"), "utf8");
export const TLS_FLAGS = [
  "--tls-port",
  "0",
  "--tls-cert",
  join(TLS_DIR, "test-a.crt"),
  "--tls-key",
  join(TLS_DIR, "test-a.key"),
];

export type TunnelHandle = RunningTunnel & {
  logs: string[];
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
};

/** A tunnel in this process, logging at debug into its own watcher. */
export function tunnelTo(
  to: string,
  options: Partial<Omit<TunnelOptions, "target" | "listenHost" | "listenPort">> = {},
): TunnelHandle {
  const watcher = logWatcher();
  const log = createLogger({ level: "debug", format: "text", write: (line) => watcher.line(line) });
  const tunnel = startTunnel({ listenHost: "127.0.0.1", listenPort: 0, target: parseTarget(to), ...options }, log);
  return Object.assign(tunnel, { logs: watcher.logs, waitForLog: watcher.waitForLog });
}

function flagValue(flags: string[], name: string): string | undefined {
  const i = flags.lastIndexOf(name);
  return i === -1 ? undefined : flags[i + 1];
}

/** The relay as `start` gives it, reached through a tunnel: `ws` to its /relay endpoint, `tls` to its TLS port. */
export function viaTunnel(start: StartRelay, scheme: "ws" | "tls"): StartRelay {
  return async (flags = [], env = {}) => {
    const relayFlags = scheme === "ws" ? [...flags, "--http-port", "any"] : [...flags, ...TLS_FLAGS];
    const relay = await start(relayFlags, env);
    // The tunnel answers an oversized frame itself, so it is told the relay's bound, as a player would be.
    const max = flagValue(flags, "--max-message-size");
    const tunnel =
      scheme === "ws"
        ? tunnelTo(`ws://127.0.0.1:${relay.httpPort}/relay`, { maxMessageSize: max ? Number(max) : undefined })
        : tunnelTo(`tls://localhost:${relay.tlsPort}`, { ca: TEST_CA });
    const handle: RelayHandle = {
      port: tunnel.port,
      tlsPort: relay.tlsPort,
      httpPort: relay.httpPort,
      logs: relay.logs,
      events: relay.events,
      waitForLog: relay.waitForLog,
      waitForEvent: relay.waitForEvent,
      server: relay.server,
      process: relay.process,
      async stop() {
        tunnel.stop();
        await relay.stop();
      },
    };
    return handle;
  };
}

export interface WsPeer {
  readonly ws: WebSocket;
  /** Decoded messages not yet taken by `next`. */
  next(timeoutMs?: number): Promise<Message>;
  /** Resolves with the close code and reason, whoever closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Set when the upgrade failed (e.g. "Expected 101 status code: 403"). */
  readonly error: string | null;
  send(message: Message): void;
}

/** A WebSocket straight to the relay's /relay (no tunnel): resolves once open or failed. */
export async function openWs(url: string, headers: Record<string, string> = {}, tls?: { ca: string }): Promise<WsPeer> {
  const ws = new WebSocket(url, { headers, tls } as Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  const inbox: Message[] = [];
  const waiters: Array<(m: Message) => void> = [];
  let error: string | null = null;
  let resolveClosed!: (v: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (resolveClosed = r));
  ws.addEventListener("message", (ev) => {
    const m = decodeMessage(new Uint8Array(ev.data as ArrayBuffer), { extensions: true });
    const w = waiters.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  ws.addEventListener("error", (ev) => {
    error = (ev as ErrorEvent).message;
  });
  ws.addEventListener("close", (ev) => resolveClosed({ code: ev.code, reason: ev.reason }));
  await Promise.race([new Promise((r) => ws.addEventListener("open", r)), closed]);
  return {
    ws,
    closed,
    get error() {
      return error;
    },
    next(timeoutMs = 5000) {
      if (inbox.length > 0) return Promise.resolve(inbox.shift()!);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((m) => {
          clearTimeout(t);
          resolve(m);
        });
      });
    },
    send(message) {
      ws.send(encodeMessage(message));
    },
  };
}
