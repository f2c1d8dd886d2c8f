/** A raw TCP peer for hostile-client tests: it sends what it is told and records every frame. */
import type { Socket } from "bun";
import { createFrameReader } from "../../src/protocol/framing.ts";
import { decodeMessage, type Message } from "../../src/protocol/messages.ts";

export interface RawPeer {
  readonly socket: Socket<undefined>;
  readonly frames: Message[];
  /** Resolves when the relay closed the connection (or it broke). */
  readonly closed: Promise<void>;
  readonly isClosed: boolean;
  write(bytes: Uint8Array): void;
  /** The next frame (past or future). */
  next(): Promise<Message>;
}

export async function connectRaw(port: number, options: { read?: boolean } = {}): Promise<RawPeer> {
  const frames: Message[] = [];
  let taken = 0;
  const waiters: Array<(m: Message) => void> = [];
  const closed = Promise.withResolvers<void>();
  let isClosed = false;
  const reader = createFrameReader(0xffffffff, {
    frame(body) {
      const m = decodeMessage(body, { extensions: true });
      frames.push(m);
      const w = waiters.shift();
      if (w) {
        taken++;
        w(m);
      }
    },
    oversized() {},
  });
  const done = () => {
    isClosed = true;
    closed.resolve();
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, chunk) => reader.push(chunk),
      close: done,
      error: done,
      // The relay closed its side: close ours, as a peer that is not hostile about it would.
      end(s) {
        s.end();
        done();
      },
    },
  });
  if (options.read === false) socket.pause();
  return {
    socket,
    frames,
    closed: closed.promise,
    get isClosed() {
      return isClosed;
    },
    write: (bytes) => void socket.write(bytes),
    next() {
      if (taken < frames.length) return Promise.resolve(frames[taken++]!);
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** A frame header announcing `length` bytes. */
export function header(length: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, length);
  return h;
}
