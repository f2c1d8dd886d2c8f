/**
 * A test double of today's Sova relay client (core/src/relay_client.rs and its use
 * in core/src/main.rs and core/src/server.rs at sova-org/Sova 1b7deac), written from
 * its described habits, not its code:
 * - the handler task holds one lock across `recv()`, and an edit needs that lock
 *   to be sent, so an edit waits until the relay sends this instance some frame;
 * - frames other than StateBroadcast and InstanceDisconnected are ignored;
 * - it marks itself disconnected only on `Error { "Connection lost" }`; on EOF
 *   its reader just stops and it keeps saying it is connected;
 * - it writes the length prefix and the body in two writes, with Nagle on.
 */
import type { Socket } from "bun";
import { createFrameReader } from "../../src/protocol/framing.ts";
import { decodeMessage, encodeMessage, toByteArrayWire, type Message, type Uuid } from "../../src/protocol/messages.ts";

/** tokio's Mutex: FIFO, so a waiting edit gets the lock as soon as `recv()` returns. */
class FairLock {
  private held = false;
  private readonly queue: Array<() => void> = [];
  async acquire(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    this.queue.push(resolve);
    await promise;
  }
  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.held = false;
  }
}

export interface SovaDouble {
  readonly isConnected: boolean;
  /** Resolves when the double marks itself disconnected (only on "Connection lost"). */
  readonly disconnected: Promise<void>;
  /** What the handler kept: broadcasts and disconnect notices, in order. */
  readonly handled: Message[];
  /** Resolves with the next handled message that `where` accepts (past or future). */
  handledWhere(where: (m: Message) => boolean): Promise<Message>;
  /** An edit of the player: waits for the lock, as `send_update` does. */
  edit(data: Uint8Array, timestamp: bigint): Promise<void>;
  /** Stop reading, as a Sova whose handler task is stuck would. */
  stall(): void;
  resume(): void;
  close(): void;
}

export async function connectSovaDouble(port: number, name: string, version = "0.1.0"): Promise<SovaDouble> {
  const frames: Message[] = [];
  const frameWaiters: Array<(m: Message) => void> = [];
  const handled: Message[] = [];
  const handledWaiters: Array<{ where: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  const lock = new FairLock();
  let connected = true;
  const lost = Promise.withResolvers<void>();

  const reader = createFrameReader(0xffffffff, {
    frame(body) {
      const msg = decodeMessage(body, { extensions: true });
      const waiter = frameWaiters.shift();
      if (waiter) waiter(msg);
      else frames.push(msg);
    },
    oversized() {},
  });
  const socket: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, chunk) => reader.push(chunk),
      // EOF: the reader stops; nothing tells the rest of the client.
      close() {},
      error() {},
    },
  });
  socket.setNoDelay(false);

  function write(msg: Message): void {
    const body = encodeMessage(msg);
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, body.length);
    socket.write(head);
    socket.write(body);
  }

  function recv(): Promise<Message> {
    const ready = frames.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => frameWaiters.push(resolve));
  }

  write({ type: "RegisterInstance", instance_name: name, version, session_token: null, capabilities: [] });
  const response = await recv();
  if (response.type !== "RegistrationResponse" || !response.success || !response.assigned_id) {
    socket.end();
    throw new Error(
      `registration failed: ${JSON.stringify(response.type === "Error" ? response.message : response.type)}`,
    );
  }
  const id: Uuid = response.assigned_id;

  function handle(msg: Message): void {
    if (msg.type === "Error" && msg.message === "Connection lost") {
      connected = false;
      lost.resolve();
      return;
    }
    if (msg.type !== "StateBroadcast" && msg.type !== "InstanceDisconnected") return; // `_ => {}`
    handled.push(msg);
    for (let i = handledWaiters.length - 1; i >= 0; i--) {
      if (handledWaiters[i]!.where(msg)) handledWaiters.splice(i, 1)[0]!.resolve(msg);
    }
  }

  let stalled = null as PromiseWithResolvers<void> | null;
  void (async () => {
    while (connected) {
      if (stalled) await stalled.promise;
      await lock.acquire();
      const msg = await recv();
      lock.release();
      handle(msg);
    }
  })();

  return {
    get isConnected() {
      return connected;
    },
    disconnected: lost.promise,
    handled,
    handledWhere(where) {
      const found = handled.find(where);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => handledWaiters.push({ where, resolve }));
    },
    async edit(data, timestamp) {
      await lock.acquire();
      write({ type: "StateUpdate", source_instance_id: id, timestamp, update_data: toByteArrayWire(data) });
      lock.release();
    },
    stall() {
      stalled = Promise.withResolvers<void>();
      socket.pause();
    },
    resume() {
      socket.resume();
      stalled?.resolve();
      stalled = null;
    },
    close() {
      socket.end();
    },
  };
}
