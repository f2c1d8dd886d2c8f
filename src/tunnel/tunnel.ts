/**
 * `sova-relay tunnel`: the player's side. It listens for plain TCP on the
 * player's machine (where Sova connects, as to any relay) and carries each
 * connection to the relay over TLS (`tls://host:9443`) or a WebSocket
 * (`wss://host/relay`, through HTTP proxies and port 443), one upstream per
 * local connection. Over a WebSocket, the local byte stream is cut into frames
 * and each frame body travels as one binary message; the way back re-adds the
 * 4-byte length. Neither side is read faster than the other can take.
 */
import tls from "node:tls";
import type { Socket, TCPSocketListener } from "bun";
import { RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { createOutbox, type Outbox } from "../lib/outbox.ts";
import { createFrameReader, type FrameReader } from "../protocol/framing.ts";
import { encodeFrame } from "../protocol/messages.ts";

export type TunnelScheme = "ws" | "wss" | "tls" | "tcp";

export interface TunnelTarget {
  scheme: TunnelScheme;
  host: string;
  port: number;
  /** The WebSocket URL (ws/wss), or `tls://host:port` / `tcp://host:port`. */
  url: string;
  /** `url` for logs: without a user name or password, should the URL carry one. */
  shown: string;
}

export interface TunnelOptions {
  listenHost: string;
  /** 0: any free port. */
  listenPort: number;
  target: TunnelTarget;
  /** PEM of the CA(s) to trust instead of the default roots (Bun's bundled ones and the system's). */
  ca?: string;
  /** Largest frame body carried over a WebSocket; larger ones get the relay's own Error, as on TCP. */
  maxMessageSize?: number;
  connectTimeoutMs?: number;
  /** WebSocket pings this often, so proxies do not close a quiet session (nginx's default read timeout is 60 s). */
  pingIntervalMs?: number;
}

export interface RunningTunnel {
  readonly host: string;
  readonly port: number;
  /** Local connections open now. */
  readonly connections: number;
  stop(): void;
}

const DEFAULT_PORTS: Record<TunnelScheme, number> = { ws: 80, wss: 443, tls: 9443, tcp: 9090 };
/** A WebSocket with more than this unsent pauses reading from the local side (the client API has no drain event). */
const WS_HIGH_WATER = 1024 * 1024;
const WS_POLL_MS = 5;
/** The same upstream failure is logged again, with a count, after this long. */
const FAILURE_REPEAT_MS = 60_000;
/** Past this much waiting for the local socket, the far side is not read until it empties. */
const LOCAL_HIGH_WATER = 256 * 1024;
/** What can still arrive after pausing (messages already read) is far below this; past it the local side is cut. */
const LOCAL_MAX_PENDING = 64 * 1024 * 1024;

export function configError(message: string): never {
  throw new RelayError("E_CONFIG", message);
}

export function parseTarget(raw: string): TunnelTarget {
  // What error messages echo: never a password given in the URL.
  const text = raw.replace(/\/\/[^@/]*@/, "//***@");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    configError(
      `invalid value for --to: '${text}'` +
        ` (expected wss://host/relay, ws://host:port/relay, tls://host:port or tcp://host:port)`,
    );
  }
  const scheme = url.protocol.replace(/:$/, "") as TunnelScheme;
  if (!(scheme in DEFAULT_PORTS))
    configError(`invalid value for --to: '${text}' (the scheme must be wss, ws, tls or tcp)`);
  if (url.hostname === "") configError(`invalid value for --to: '${text}' (no host)`);
  const port = url.port === "" ? DEFAULT_PORTS[scheme] : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const ws = scheme === "ws" || scheme === "wss";
  // `wss://relay.example.org` means the relay's endpoint, not the proxy's root page.
  if (ws && url.pathname === "/") url.pathname = "/relay";
  const href = ws ? url.href : `${scheme}://${url.host}${url.port === "" ? `:${port}` : ""}`;
  url.username = "";
  url.password = "";
  if (url.search !== "") url.search = "?***";
  return {
    scheme,
    host,
    port,
    url: href,
    shown: ws ? url.href : `${scheme}://${url.host}${url.port === "" ? `:${port}` : ""}`,
  };
}

const CERT_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|HOSTNAME|CHAIN/;

/** One line saying why the far side could not be reached, and what to do when the user can do something. */
export function describeFailure(
  target: TunnelTarget,
  code: string | undefined,
  message: string,
  hasCa: boolean,
): { reason: string; text: string } {
  const where = `${target.host}:${target.port}`;
  const c = code ?? "";
  if (CERT_CODES.test(c) || /certificate/i.test(message)) {
    const detail = message.replace(/^.*TLS handshake failed: /, "");
    return {
      reason: "certificate",
      text:
        `${where}'s certificate is not trusted (${c || "TLS"}: ${detail})` +
        `${hasCa ? "; check --ca" : "; for a private CA pass --ca FILE"}`,
    };
  }
  if (c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "EAI_NONAME" || c.startsWith("DNS"))
    return { reason: "dns", text: `cannot resolve ${target.host} (${c})` };
  if (c === "ECONNREFUSED") return { reason: "refused", text: `connection refused by ${where}` };
  if (c === "ETIMEDOUT" || c === "timeout") return { reason: "timeout", text: `no answer from ${where} (${message})` };
  if (c === "EHOSTUNREACH" || c === "ENETUNREACH")
    return { reason: "unreachable", text: `${where} is unreachable (${c})` };
  const status = /Expected 101 status code: (\d+)/.exec(message);
  if (status)
    return {
      reason: "http",
      text:
        `${target.shown} refused the WebSocket upgrade with HTTP ${status[1]}` +
        ` (wrong path, a proxy without WebSocket support,` +
        ` or an address the relay refuses)`,
    };
  return {
    reason: "other",
    text:
      `cannot reach ${where}: ${c ? `${c}: ` : ""}` +
      `${message.replace(/^WebSocket connection to '[^']*' failed: /, "")}`,
  };
}

interface Link {
  id: number;
  local: Socket<Link>;
  /** Bytes for the local socket: what one event-loop turn brings leaves in one write; partial writes wait for drain. */
  toLocal: Outbox;
  upstream: Upstream | null;
  /** The far side is gone: the local socket ends once toLocal is written. */
  upstreamEnded: boolean;
  closed: boolean;
  bytesUp: number;
  bytesDown: number;
}

interface Upstream {
  /** Bytes the local side sent. */
  send(chunk: Uint8Array): void;
  /** The local side has more queued: stop reading from the far side. */
  pause(): void;
  resume(): void;
  close(): void;
}

/**
 * Bun's bundled roots and the operating system's trust store (a company or university CA installed there counts).
 * Bun's "default" set holds the bundled roots (and NODE_EXTRA_CA_CERTS) but not the system's unless told to: a
 * player's machine that trusts the relay's CA in its own store was refused, so the system's are asked for too.
 */
function defaultRoots(): string[] | undefined {
  try {
    const get = (tls as unknown as { getCACertificates?: (type: string) => string[] }).getCACertificates;
    if (!get) return undefined;
    return [...new Set([...get("default"), ...get("system")])];
  } catch {
    return undefined;
  }
}

export function startTunnel(options: TunnelOptions, log: Logger): RunningTunnel {
  const { target } = options;
  const ca = options.ca ?? (target.scheme === "wss" || target.scheme === "tls" ? defaultRoots() : undefined);
  const maxMessageSize = options.maxMessageSize ?? 1_048_576;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const links = new Set<Link>();
  let nextId = 1;

  /**
   * Queues bytes for the local socket (`bytes` must stay unchanged until sent); past the high-water mark the far side
   * is not read.
   */
  function writeLocal(link: Link, bytes: Uint8Array): void {
    if (link.closed) return;
    link.bytesDown += bytes.length;
    if (!link.toLocal.enqueue(bytes)) {
      log.warn(
        "tunnel_local_slow",
        `Connection ${link.id}: the local side stopped reading (${link.toLocal.pendingBytes} bytes waiting);` +
          ` closing it`,
        { connection: link.id },
      );
      link.local.terminate();
      return;
    }
    if (link.toLocal.pendingBytes > LOCAL_HIGH_WATER) link.upstream?.pause();
  }

  /** The far side is gone (or never came): the local side sees its connection end. */
  function upstreamGone(link: Link): void {
    if (link.upstreamEnded) return;
    link.upstreamEnded = true;
    link.toLocal.endAfterFlush();
  }

  // Sova reconnects every few seconds while the relay is unreachable: the same failure
  // is one line, then a count once a minute, not a line per attempt.
  let lastFailure = { text: "", at: 0, repeats: 0 };

  function failed(link: Link, code: string | undefined, message: string): void {
    const { reason, text } = describeFailure(target, code, message, options.ca !== undefined);
    const now = Date.now();
    upstreamGone(link);
    if (text === lastFailure.text && now - lastFailure.at < FAILURE_REPEAT_MS) {
      lastFailure.repeats++;
      log.debug("tunnel_upstream_failed", `Connection ${link.id}: ${text} (again)`, { connection: link.id, reason });
      return;
    }
    if (lastFailure.repeats > 0) {
      log.warn("tunnel_upstream_failed_repeated", `The last failure happened ${lastFailure.repeats} more times`, {
        count: lastFailure.repeats,
      });
    }
    lastFailure = { text, at: now, repeats: 0 };
    log.error("tunnel_upstream_failed", `Connection ${link.id}: ${text}; closing the local connection`, {
      connection: link.id,
      reason,
      target: target.shown,
    });
  }

  function openWebSocket(link: Link): Upstream {
    const ws = new WebSocket(target.url, {
      tls: ca ? { ca } : undefined,
      perMessageDeflate: false,
    } as Bun.WebSocketOptions);
    ws.binaryType = "arraybuffer";
    let opened = false;
    let errored = false;
    let pollTimer: Timer | null = null;
    let keepalive: Timer | null = null;
    const timer = setTimeout(() => {
      if (opened) return;
      errored = true;
      failed(link, "timeout", `no WebSocket within ${connectTimeoutMs / 1000} s`);
      ws.close();
    }, connectTimeoutMs);
    // One frame body per message; a frame larger than the relay takes gets the relay's
    // own answer here, so the instance sees what it would see on TCP.
    const reader: FrameReader = createFrameReader(maxMessageSize, {
      frame(body) {
        ws.send(body);
        if (ws.bufferedAmount > WS_HIGH_WATER && pollTimer === null) {
          link.local.pause();
          pollTimer = setInterval(() => {
            if (ws.bufferedAmount > WS_HIGH_WATER / 2 && ws.readyState === WebSocket.OPEN) return;
            clearInterval(pollTimer!);
            pollTimer = null;
            if (!link.closed) link.local.resume();
          }, WS_POLL_MS);
        }
      },
      oversized(length) {
        log.warn(
          "tunnel_oversized",
          `Connection ${link.id}: a ${length}-byte frame is over --max-message-size (${maxMessageSize});` +
            ` skipped and answered as the relay would`,
          {
            connection: link.id,
            length,
          },
        );
        writeLocal(
          link,
          encodeFrame({ type: "Error", message: `Message too large: ${length} bytes (max: ${maxMessageSize})` }),
        );
      },
    });
    ws.addEventListener("open", () => {
      opened = true;
      clearTimeout(timer);
      keepalive = setInterval(() => ws.ping(), options.pingIntervalMs ?? 30_000);
      log.info("tunnel_open", `Connection ${link.id}: carried to ${target.shown}`, {
        connection: link.id,
        target: target.shown,
      });
      if (link.closed) ws.close(1000);
      else link.local.resume();
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data === "string") return; // the relay sends binary only
      // Header and body queued apart (the body is this message's own buffer): no copy until the merged write.
      const body = new Uint8Array(ev.data as ArrayBuffer);
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, body.length);
      writeLocal(link, header);
      writeLocal(link, body);
    });
    ws.addEventListener("error", (ev) => {
      if (errored) return;
      errored = true;
      const e = ev as ErrorEvent & { error?: { code?: string } };
      if (!opened) failed(link, e.error?.code, e.message ?? "WebSocket error");
    });
    ws.addEventListener("close", (ev) => {
      clearTimeout(timer);
      if (pollTimer) clearInterval(pollTimer);
      if (keepalive) clearInterval(keepalive);
      if (opened && !link.closed) {
        log.info(
          "tunnel_upstream_closed",
          `Connection ${link.id}: the relay closed the WebSocket (${ev.code}${ev.reason ? ` ${ev.reason}` : ""});` +
            ` closing the local connection`,
          {
            connection: link.id,
            code: ev.code,
            reason: ev.reason,
          },
        );
      } else if (!opened && !errored && !link.closed) failed(link, undefined, `closed before opening (${ev.code})`);
      upstreamGone(link);
    });
    return {
      send: (chunk) => reader.push(chunk),
      pause: () => void ws.pause(),
      resume: () => void ws.resume(),
      close() {
        reader.stop();
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
      },
    };
  }

  function openStream(link: Link): Upstream {
    let socket: Socket<undefined> | null = null;
    const pendingUp: Uint8Array[] = [];
    let handshakeError: { code?: string; message: string } | null = null;
    let ready = false;
    const useTls = target.scheme === "tls";
    const timer = setTimeout(() => {
      if (ready) return;
      failed(link, "timeout", `no connection within ${connectTimeoutMs / 1000} s`);
      socket?.terminate();
    }, connectTimeoutMs);
    const up: Upstream = {
      send(chunk) {
        if (!socket) return;
        if (pendingUp.length > 0) {
          pendingUp.push(chunk.slice());
          return;
        }
        const n = socket.write(chunk);
        if (n < chunk.length) {
          pendingUp.push(chunk.slice(Math.max(n, 0)));
          link.local.pause();
        }
      },
      pause: () => socket?.pause(),
      resume: () => socket?.resume(),
      close: () => socket?.end(),
    };
    /** The far side took what it had refused: send the rest, then read the local side again. */
    function drainUp(): void {
      while (socket && pendingUp.length > 0) {
        const head = pendingUp[0]!;
        const n = socket.write(head);
        if (n < head.length) {
          pendingUp[0] = head.subarray(Math.max(n, 0));
          return;
        }
        pendingUp.shift();
      }
      if (!link.closed) link.local.resume();
    }
    function becameReady(s: Socket<undefined>): void {
      ready = true;
      clearTimeout(timer);
      log.info("tunnel_open", `Connection ${link.id}: carried to ${target.shown}`, {
        connection: link.id,
        target: target.shown,
      });
      if (link.closed) s.end();
      else link.local.resume();
    }
    Bun.connect({
      hostname: target.host,
      port: target.port,
      tls: useTls ? { serverName: target.host, ca, rejectUnauthorized: true } : undefined,
      socket: {
        open(s) {
          socket = s;
          s.setNoDelay(true);
          s.timeout(0);
          if (!useTls) becameReady(s);
        },
        handshake(s, success, authorizationError) {
          if (success && !authorizationError) return becameReady(s);
          const e = authorizationError as (Error & { code?: string }) | null;
          handshakeError = { code: e?.code, message: e?.message ?? "TLS handshake failed" };
        },
        data(_s, chunk) {
          // Copied: the queue holds it past this callback.
          writeLocal(link, chunk.slice());
        },
        drain: drainUp,
        close() {
          clearTimeout(timer);
          if (handshakeError) failed(link, handshakeError.code, handshakeError.message);
          else if (!ready && !link.closed) failed(link, undefined, "closed during connect");
          else if (!link.closed)
            log.info(
              "tunnel_upstream_closed",
              `Connection ${link.id}: the relay closed the connection; closing the local connection`,
              { connection: link.id },
            );
          upstreamGone(link);
        },
        error() {},
        connectError() {},
      },
    }).catch((error: Error & { code?: string }) => {
      clearTimeout(timer);
      failed(link, error.code, error.message);
    });
    return up;
  }

  const listener: TCPSocketListener<Link> = Bun.listen<Link>({
    hostname: options.listenHost,
    port: options.listenPort,
    socket: {
      open(local) {
        local.timeout(0);
        local.setNoDelay(true);
        // Nothing is read until the far side is there to take it.
        local.pause();
        const link: Link = {
          id: nextId++,
          local,
          toLocal: null!,
          upstream: null,
          upstreamEnded: false,
          closed: false,
          bytesUp: 0,
          bytesDown: 0,
        };
        link.toLocal = createOutbox(
          { write: (bytes) => local.write(bytes), end: () => local.end() },
          { maxPendingBytes: LOCAL_MAX_PENDING, onEmpty: () => link.upstream?.resume() },
        );
        local.data = link;
        links.add(link);
        log.info(
          "tunnel_accepted",
          `Connection ${link.id} from ${local.remoteAddress}:${local.remotePort}; opening ${target.shown}`,
          { connection: link.id, ip: local.remoteAddress },
        );
        link.upstream = target.scheme === "ws" || target.scheme === "wss" ? openWebSocket(link) : openStream(link);
      },
      data(local, chunk) {
        const link = local.data;
        link.bytesUp += chunk.length;
        link.upstream?.send(chunk);
      },
      drain(local) {
        local.data.toLocal.flush();
      },
      close(local) {
        const link = local.data;
        if (!link || link.closed) return;
        link.closed = true;
        links.delete(link);
        link.toLocal.clear();
        link.upstream?.close();
        log.info("tunnel_closed", `Connection ${link.id} closed (${link.bytesUp} bytes up, ${link.bytesDown} down)`, {
          connection: link.id,
          bytes_up: link.bytesUp,
          bytes_down: link.bytesDown,
        });
      },
      error() {},
    },
  });

  return {
    host: options.listenHost,
    port: listener.port,
    get connections() {
      return links.size;
    },
    stop() {
      listener.stop(true);
      for (const link of links) link.local.end();
    },
  };
}
