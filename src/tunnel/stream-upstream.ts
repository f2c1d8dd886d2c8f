/**
 * The relay over TLS (tls://host:9443) or plain TCP (tcp://, for tests and
 * loopback): frames as `[u32 length][body]`, as Sova speaks them.
 */
import type { Socket } from "bun";
import { createOutbox } from "../lib/outbox.ts";
import { createFrameReader } from "../protocol/framing.ts";
import type { TunnelTarget } from "./target.ts";
import {
  MAX_FRAME_FROM_RELAY,
  type Upstream,
  type UpstreamEvents,
  type UpstreamOptions,
  withLength,
} from "./upstream.ts";

export function openStream(target: TunnelTarget, o: UpstreamOptions, events: UpstreamEvents): Upstream {
  let socket: Socket<undefined> | null = null;
  let ready = false;
  let ended = false;
  let handshakeError: { code?: string; message: string } | null = null;
  const useTls = target.scheme === "tls";
  const out = createOutbox(
    { write: (bytes) => socket?.write(bytes) ?? -1, end: () => socket?.end() },
    {
      maxPendingBytes: Number.MAX_SAFE_INTEGER,
      onEmpty: () => events.writable(),
    },
  );
  const reader = createFrameReader(MAX_FRAME_FROM_RELAY, {
    frame: (body) => events.frame(body),
    oversized(length) {
      end();
      socket?.terminate();
      events.closed(`the relay sent a ${length}-byte frame`);
    },
  });
  const timer = setTimeout(() => {
    if (ready || ended) return;
    end();
    events.failed("timeout", `no connection within ${o.connectTimeoutMs / 1000} s`);
    socket?.terminate();
  }, o.connectTimeoutMs);

  function end(): void {
    ended = true;
    clearTimeout(timer);
    reader.stop();
  }

  function becameReady(): void {
    ready = true;
    clearTimeout(timer);
    if (ended) socket?.end();
    else events.open();
  }

  Bun.connect({
    hostname: target.host,
    port: target.port,
    tls: useTls ? { serverName: target.host, ca: o.ca, rejectUnauthorized: true } : undefined,
    socket: {
      open(s) {
        socket = s;
        s.setNoDelay(true);
        s.timeout(0);
        if (!useTls) becameReady();
      },
      handshake(_s, success, authorizationError) {
        if (success && !authorizationError) return becameReady();
        const e = authorizationError as (Error & { code?: string }) | null;
        handshakeError = { code: e?.code, message: e?.message ?? "TLS handshake failed" };
      },
      data: (_s, chunk) => reader.push(chunk),
      drain: () => out.flush(),
      close() {
        out.clear();
        if (ended) return;
        end();
        if (handshakeError) events.failed(handshakeError.code, handshakeError.message);
        else if (!ready) events.failed(undefined, "closed during connect");
        else events.closed("the relay closed the connection");
      },
      error() {},
      connectError() {},
    },
  }).catch((error: Error & { code?: string }) => {
    if (ended) return;
    end();
    events.failed(error.code, error.message);
  });

  return {
    target,
    send(body) {
      if (!ready || ended) return;
      out.enqueue(withLength(body));
    },
    get backlog() {
      return out.pendingBytes;
    },
    pause: () => socket?.pause(),
    resume: () => socket?.resume(),
    close() {
      end();
      if (socket) out.endAfterFlush();
    },
    terminate() {
      end();
      out.clear();
      socket?.terminate();
    },
  };
}
