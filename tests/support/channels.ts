/**
 * How the contract suite's peers reach a relay, whatever the transport: a
 * `Channel` carries frame bodies both ways (and, on a byte stream, bytes as they
 * are). Here the socket ones: TCP and TLS (the 4-byte length before each body)
 * and a WebSocket (one binary message per body). The socket-free one, to the
 * core in this process, is in core-relay.ts.
 */
import type { Socket } from "bun";
import { createOutbox } from "../../src/lib/outbox.ts";
import { createFrameReader, frameOf } from "../../src/protocol/framing.ts";
import { registerBody, registerFrame } from "./peers.ts";

export interface Channel {
  /** One frame body: length-prefixed on a byte stream, one message on a message transport. */
  sendFrame(body: Uint8Array): void;
  /**
   * Bytes as they are, in a write of their own (half a frame, a frame cut anywhere); resolves once the event loop
   * has turned, so a relay in this process reads them alone. Only byte streams have it.
   */
  readonly sendBytes?: (bytes: Uint8Array) => Promise<void>;
  /** Called with each frame body received, in order; the body may be a view, used before the handler returns. */
  onFrame(handler: (body: Uint8Array) => void): void;
  /** Resolves once the connection is gone, whoever ended it. */
  readonly closed: Promise<void>;
  /** Ends our side after what we sent: the relay sees the peer leave. */
  close(): void;
}

/** A peer that sent its RegisterInstance and reads nothing more. */
export interface Sleeper {
  terminate(): void;
}

/** Lets the event loop turn once (I/O included), so that bytes written before it are read apart from later ones. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Frame bodies out of a byte stream, handed to every handler. */
export function frameSplitter(handlers: Array<(body: Uint8Array) => void>) {
  return createFrameReader(0xffffffff, {
    frame(body) {
      for (const h of handlers) h(body);
    },
    oversized() {},
  });
}

/**
 * TCP, or TLS with `ca`, to 127.0.0.1 (the test certificate names it). Frames
 * queued in one turn leave in one write, as the project's client sends them;
 * `sendBytes` writes at once and alone.
 */
export async function openStream(port: number, tls?: { ca: string }): Promise<Channel> {
  const handlers: Array<(body: Uint8Array) => void> = [];
  const reader = frameSplitter(handlers);
  const { promise: closed, resolve: gone } = Promise.withResolvers<void>();
  let socket: Socket<undefined> | null = null;
  const outbox = createOutbox(
    { write: (bytes) => (socket ? socket.write(bytes) : 0), end: () => socket?.end() },
    { maxPendingBytes: Number.MAX_SAFE_INTEGER },
  );
  socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    tls: tls ? { ca: tls.ca } : undefined,
    socket: {
      data: (_s, chunk) => reader.push(chunk),
      drain: () => outbox.flush(),
      close: () => gone(),
      error: () => gone(),
      connectError: () => gone(),
      // The relay ended its side: end ours, as a peer does that is not hostile about it.
      end: (s) => void s.end(),
    },
  });
  // Bun's 120 s socket timeout is not reset by traffic.
  socket.timeout(0);
  socket.setNoDelay(true);
  return {
    sendFrame: (body) => void outbox.enqueue(frameOf(body)),
    async sendBytes(bytes) {
      outbox.enqueue(bytes);
      outbox.flush();
      await turn();
    },
    onFrame: (handler) => void handlers.push(handler),
    closed,
    close: () => outbox.endAfterFlush(),
  };
}

/**
 * A WebSocket to the relay's /relay, sending no Origin header and no compression
 * offer, as Sova's tunnel does. Resolves once open; throws when the upgrade fails.
 */
export async function openWebSocket(url: string): Promise<Channel> {
  const ws = new WebSocket(url, { perMessageDeflate: false } as Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  const handlers: Array<(body: Uint8Array) => void> = [];
  const { promise: closed, resolve: gone } = Promise.withResolvers<void>();
  let failure = "";
  ws.addEventListener("message", (ev) => {
    const body = new Uint8Array(ev.data as ArrayBuffer);
    for (const h of handlers) h(body);
  });
  ws.addEventListener("error", (ev) => {
    failure = (ev as ErrorEvent).message;
  });
  ws.addEventListener("close", () => gone());
  const opened = await Promise.race([
    new Promise<boolean>((resolve) => ws.addEventListener("open", () => resolve(true))),
    closed.then(() => false),
  ]);
  if (!opened) throw new Error(`WebSocket to ${url} did not open: ${failure || "closed"}`);
  return {
    sendFrame: (body) => ws.send(body),
    onFrame: (handler) => void handlers.push(handler),
    closed,
    close: () => ws.close(1000),
  };
}

/** Registers as `name` over TCP (or TLS with `ca`), then stops reading: what the relay sends it piles up. */
export async function streamSleeper(port: number, name: string, tls?: { ca: string }): Promise<Sleeper> {
  // Over TLS the handshake needs reading: the sleeper stops only once it is done.
  const secured = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    tls: tls ? { ca: tls.ca } : undefined,
    socket: {
      data() {},
      close() {},
      error: (_s, e) => secured.reject(e),
      handshake: (_s, ok, e) => (ok ? secured.resolve() : secured.reject(e)),
    },
  });
  if (tls) await secured.promise;
  socket.write(registerFrame(name));
  socket.pause();
  return { terminate: () => socket.terminate() };
}

/** The same over a WebSocket: registers, then Bun's client stops reading its socket. */
export async function webSocketSleeper(url: string, name: string): Promise<Sleeper> {
  const ws = new WebSocket(url, { perMessageDeflate: false } as Bun.WebSocketOptions);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("close", () => reject(new Error(`WebSocket to ${url} did not open`)));
  });
  ws.send(registerBody(name));
  ws.pause();
  return { terminate: () => ws.terminate() };
}
