/**
 * `sova-relay tunnel`: the player's side. It listens for plain TCP on the
 * player's machine (where Sova connects, as to any relay) and carries each
 * connection to the relay over TLS (`tls://host:9443`) or a WebSocket
 * (`wss://host/relay`, through HTTP proxies and port 443), one upstream per
 * local connection, and keeps Sova's connection through a lost upstream by
 * resuming the session (docs/resume.md). The parts: target.ts (addresses and
 * failure lines), ws-upstream.ts and stream-upstream.ts (the relay's side),
 * local.ts (Sova's side), carry.ts (one connection), resume.ts (what a
 * resumption needs), failover.ts (which address next, and when).
 */
import type { Logger } from "../lib/log.ts";
import { Carrier, type CarryContext, TICK_MS } from "./carry.ts";
import type { Backoff } from "./failover.ts";
import { listenLocal } from "./local.ts";
import { openStream } from "./stream-upstream.ts";
import { defaultRoots, describeFailure, isWebSocket, type TunnelTarget } from "./target.ts";
import type { UpstreamOptions } from "./upstream.ts";
import { openWebSocket } from "./ws-upstream.ts";

export { configError, describeFailure, parseTarget, parseTargets } from "./target.ts";
export type { TunnelScheme, TunnelTarget } from "./target.ts";

export interface TunnelOptions {
  listenHost: string;
  /** 0: any free port. */
  listenPort: number;
  /** The relay; `targets` when there are several (a cluster's nodes), tried in turn. */
  target?: TunnelTarget;
  targets?: TunnelTarget[];
  /** PEM of the CA(s) to trust instead of the default roots (Bun's bundled ones and the system's). */
  ca?: string;
  /** Largest frame body taken from Sova; larger ones get the relay's own Error, as on TCP. */
  maxMessageSize?: number;
  connectTimeoutMs?: number;
  /** WebSocket pings this often, so proxies do not close a quiet session (nginx's default read timeout is 60 s). */
  pingIntervalMs?: number;
  /** Ask the relay to keep the session through a lost connection (default on). */
  resume?: boolean;
  /** Bytes of the player's edits held while the relay has not confirmed them (default 4 MiB). */
  maxHeldBytes?: number;
  /** A relay silent this long is taken for gone and the session resumed (default 3 s). */
  upstreamTimeoutMs?: number;
  backoff?: Backoff;
}

export interface RunningTunnel {
  readonly host: string;
  readonly port: number;
  /** Local connections open now. */
  readonly connections: number;
  /** Edits held for the relay across every connection, and their bytes. */
  readonly held: { edits: number; bytes: number };
  stop(): void;
}

/** The last failure to reach the relay, repeated: Sova reconnects every few seconds while it is unreachable. */
const FAILURE_REPEAT_MS = 60_000;

function failureLog(log: Logger, hasCa: boolean): CarryContext["failed"] {
  let last = { text: "", at: 0, repeats: 0 };
  return (connection, target, code, message) => {
    const { reason, text } = describeFailure(target, code, message, hasCa);
    const now = Date.now();
    if (text === last.text && now - last.at < FAILURE_REPEAT_MS) {
      last.repeats++;
      log.debug("tunnel_upstream_failed", `Connection ${connection}: ${text} (again)`, { connection, reason });
      return;
    }
    if (last.repeats > 0) {
      log.warn("tunnel_upstream_failed_repeated", `The last failure happened ${last.repeats} more times`, {
        count: last.repeats,
      });
    }
    last = { text, at: now, repeats: 0 };
    log.error("tunnel_upstream_failed", `Connection ${connection}: ${text}; closing the local connection`, {
      connection,
      reason,
      target: target.shown,
    });
  };
}

export function startTunnel(options: TunnelOptions, log: Logger): RunningTunnel {
  const targets = options.targets ?? (options.target ? [options.target] : []);
  const secure = targets.some((t) => t.scheme === "wss" || t.scheme === "tls");
  const upstream: UpstreamOptions = {
    ca: options.ca ?? (secure ? defaultRoots() : undefined),
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    pingIntervalMs: options.pingIntervalMs ?? 30_000,
  };
  const ctx: CarryContext = {
    options: {
      targets,
      resume: options.resume ?? true,
      maxHeldBytes: options.maxHeldBytes ?? 4 * 1024 * 1024,
      upstreamTimeoutMs: options.upstreamTimeoutMs ?? 3000,
      backoff: options.backoff,
      hasCa: options.ca !== undefined,
    },
    log,
    open: (target, events) =>
      isWebSocket(target) ? openWebSocket(target, upstream, events) : openStream(target, upstream, events),
    failed: failureLog(log, options.ca !== undefined),
    carriers: new Set(),
  };
  const listener = listenLocal(
    { host: options.listenHost, port: options.listenPort, maxMessageSize: options.maxMessageSize ?? 1_048_576 },
    log,
    (local) => {
      log.info(
        "tunnel_accepted",
        `Connection ${local.id} from ${local.address}; opening ${targets[0]!.shown}` +
          `${targets.length > 1 ? ` (or ${targets.length - 1} more)` : ""}`,
        { connection: local.id, ip: local.address },
      );
      return new Carrier(ctx, local);
    },
  );
  // One timer for every connection: twenty connections at a venue do not wake the tunnel a thousand times a second.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const c of ctx.carriers) c.tick(now);
  }, TICK_MS);
  return {
    host: options.listenHost,
    port: listener.port,
    get connections() {
      return ctx.carriers.size;
    },
    get held() {
      let edits = 0;
      let bytes = 0;
      for (const c of ctx.carriers) {
        edits += c.state.heldEdits;
        bytes += c.state.heldBytes;
      }
      return { edits, bytes };
    },
    stop() {
      clearInterval(ticker);
      listener.stop(true);
      for (const c of [...ctx.carriers]) c.shutdown();
    },
  };
}
