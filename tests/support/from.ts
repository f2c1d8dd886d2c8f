/**
 * Peers from a chosen loopback address: all of 127.0.0.0/8 is loopback on
 * Linux, so a test can be several strangers (or a player and a stranger) on
 * real sockets, each seen by the relay's per-address limits as its own address.
 */
import net from "node:net";
import { createFrameReader } from "../../src/protocol/framing.ts";
import { decodeMessage, type Message } from "../../src/protocol/messages.ts";

export interface FromPeer {
  readonly socket: net.Socket;
  readonly frames: Message[];
  readonly closed: Promise<void>;
  readonly isClosed: boolean;
  /** The next frame not taken yet (past or future); rejects when the connection closes first. */
  next(timeoutMs?: number): Promise<Message>;
}

/** A TCP connection from `from` to the relay, reading and decoding frames. */
export function connectFrom(port: number, from: string): Promise<FromPeer> {
  const frames: Message[] = [];
  let taken = 0;
  let isClosed = false;
  const waiters: Array<{ resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  const closed = Promise.withResolvers<void>();
  const reader = createFrameReader(0xffffffff, {
    frame(body) {
      frames.push(decodeMessage(body, { extensions: true }));
      const w = waiters.shift();
      if (w) w.resolve(frames[taken++]!);
    },
    oversized() {},
  });
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  socket.on("data", (chunk: Buffer) => reader.push(chunk));
  socket.on("error", () => {});
  socket.on("close", () => {
    isClosed = true;
    for (const w of waiters.splice(0)) w.reject(new Error(`connection from ${from} closed`));
    closed.resolve();
  });
  const peer: FromPeer = {
    socket,
    frames,
    closed: closed.promise,
    get isClosed() {
      return isClosed;
    },
    next(timeoutMs = 5000) {
      if (taken < frames.length) return Promise.resolve(frames[taken++]!);
      if (isClosed) return Promise.reject(new Error(`connection from ${from} closed`));
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(t);
            reject(e);
          },
        });
      });
    },
  };
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(peer));
    socket.once("error", reject);
  });
}

const UPGRADE =
  "GET /relay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

export interface Holders {
  /** Connections opened so far (each reopened as soon as the relay closes it). */
  readonly opened: number;
  /** Resolves once `count` of them are open at once. */
  readonly ready: Promise<void>;
  stop(): void;
}

/**
 * `count` connections from `from` that never send a frame, each opened again as soon as the relay
 * closes it: plain TCP to `port`, or upgraded WebSockets when `websocket` (then `port` is the HTTP port).
 */
export function holdSilent(port: number, from: string, count: number, websocket = false): Holders {
  let stopped = false;
  let opened = 0;
  let open = 0;
  const live = new Set<net.Socket>();
  const ready = Promise.withResolvers<void>();
  function one(): void {
    if (stopped) return;
    const s = net.connect({ host: "127.0.0.1", port, localAddress: from });
    live.add(s);
    opened++;
    let counted = false;
    const up = () => {
      if (counted) return;
      counted = true;
      if (++open >= count) ready.resolve();
    };
    s.on("error", () => {});
    s.on("connect", () => {
      if (!websocket) return up();
      s.write(UPGRADE);
    });
    // A WebSocket counts once the relay answered the upgrade.
    s.on("data", (d) => {
      if (websocket && d.toString("latin1").startsWith("HTTP/1.1 101")) up();
    });
    s.on("close", () => {
      live.delete(s);
      if (counted) open--;
      one();
    });
  }
  for (let i = 0; i < count; i++) one();
  return {
    get opened() {
      return opened;
    },
    ready: ready.promise,
    stop() {
      stopped = true;
      for (const s of live) s.destroy();
    },
  };
}
