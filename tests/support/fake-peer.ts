/**
 * The relay core's view of a connection, without a socket: a `Peer` that records
 * what it is sent, and a clock the test moves by hand. The relay's rules read
 * time and reach connections only through these.
 */
import { createFrameReader } from "../../src/protocol/framing.ts";
import { decodeMessage, type Message } from "../../src/protocol/messages.ts";
import type { Peer, RelayOptions } from "../../src/core/index.ts";
import type { Outbox } from "../../src/lib/outbox.ts";

/** The relay's options as the core tests start from: its defaults, no token, no idle timeout. */
export const CORE_OPTIONS: RelayOptions = {
  expectedVersion: "0.1.0",
  maxInstances: 20,
  rateLimit: 1000,
  maxMessageSize: 1 << 20,
  tokens: [],
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 0,
};

export interface TestPeer extends Peer {
  frames: Uint8Array[];
  /** For each frame, whether the relay made it for this peer alone (`own`) or shares it. */
  owned: boolean[];
  /** For each frame, the memory the relay said it holds (its length unless told more). */
  costs: number[];
  closedHow: "close" | "closeWith" | "terminate" | null;
  frameLimit: number;
  refuse: boolean;
  /** Called when the relay terminates it: a transport reports the socket gone at once (Bun does). */
  onTerminate: (() => void) | null;
  messages(): Message[];
}

/** What the peer reads: the queued buffers as one byte stream (a frame may be queued in parts). */
export function readFrames(buffers: readonly Uint8Array[]): Uint8Array[] {
  const bodies: Uint8Array[] = [];
  const reader = createFrameReader(0xffffffff, { frame: (body) => bodies.push(body.slice()), oversized: () => {} });
  for (const b of buffers) reader.push(b);
  return bodies;
}

export function peer(address = "10.0.0.1"): TestPeer {
  const p: TestPeer = {
    address,
    port: 5000,
    pendingBytes: 0,
    frontBytes: 0,
    frames: [],
    owned: [],
    costs: [],
    closedHow: null,
    frameLimit: 0,
    refuse: false,
    onTerminate: null,
    send(frame, _front, own = false, cost = frame.length) {
      if (p.refuse) return false;
      p.frames.push(frame);
      p.owned.push(own);
      p.costs.push(cost);
      return true;
    },
    close() {
      p.closedHow = "close";
    },
    closeWith(last) {
      p.frames.push(last);
      p.closedHow = "closeWith";
    },
    setFrameLimit(bytes) {
      p.frameLimit = bytes;
    },
    terminate() {
      p.closedHow = "terminate";
      p.onTerminate?.();
    },
    messages: () => readFrames(p.frames).map((body) => decodeMessage(body, { extensions: true })),
  };
  return p;
}

/** A clock the test moves by hand. */
export function manualClock(start = 1_700_000_000_000) {
  let t = start;
  return {
    now: () => t,
    monotonic: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

/** A `Peer` that queues through the transports' own outbox (its bound, its counting, the last word). */
export function outboxPeer(
  outbox: Outbox,
  address: string,
  port: number,
  ends: Partial<Pick<Peer, "terminate" | "setFrameLimit">> = {},
): Peer {
  return {
    address,
    port,
    get pendingBytes() {
      return outbox.pendingBytes;
    },
    get frontBytes() {
      return outbox.frontBytes;
    },
    send: (frame, front, own, cost) => outbox.enqueue(frame, front, own, cost),
    close: () => outbox.endAfterFlush(),
    closeWith: (last) => outbox.endWith(last),
    terminate: ends.terminate ?? (() => outbox.clear()),
    setFrameLimit: ends.setFrameLimit ?? (() => {}),
  };
}
