/**
 * Where Sova connects: a plain TCP listener on the player's machine. Each
 * connection reads Sova's frames (a frame larger than the relay takes is
 * answered here, as the relay would) and queues what goes back; it stays open
 * for as long as the tunnel decides, whatever happens upstream.
 */
import type { Socket, TCPSocketListener } from "bun";
import type { Logger } from "../lib/log.ts";
import { createOutbox, type Outbox } from "../lib/outbox.ts";
import { createFrameReader, type FrameReader } from "../protocol/framing.ts";
import { encodeFrame } from "../protocol/messages.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

/** What can still arrive after pausing the far side is far below this; past it the local side is cut. */
const LOCAL_MAX_PENDING = 64 * 1024 * 1024;

export interface LocalEvents {
  /** A frame body from Sova, a view valid during the call. */
  frame(body: Uint8Array): void;
  /** Sova closed its connection (or it broke). */
  closed(): void;
  /** What was queued for Sova has all been taken. */
  drained(): void;
  /**
   * A frame header came alone: Sova writes the header and the body apart with Nagle on, so its kernel holds the body
   * until this side's ACK, which this kernel delays up to 40 ms when it has nothing to send (docs/protocol.md,
   * "Nudges"). Answered here, at once, rather than a round trip to the relay later.
   */
  loneHeader(): void;
}

export interface LocalSide {
  readonly id: number;
  readonly address: string;
  /** A whole frame (`[u32 length][body]`), kept as it is until sent. */
  write(frame: Uint8Array): void;
  /** Bytes queued for Sova and not yet taken. */
  readonly pendingBytes: number;
  /** When something was last queued for Sova (nudges). */
  readonly lastWrite: number;
  pause(): void;
  resume(): void;
  /** Send what is queued, then close. */
  end(): void;
  /** Bytes carried each way, for the closing line. */
  readonly bytesUp: number;
  readonly bytesDown: number;
}

interface LocalState {
  side: LocalSide;
  events: LocalEvents | null;
  reader: FrameReader;
  toLocal: Outbox;
  closed: boolean;
}

export interface LocalOptions {
  host: string;
  port: number;
  maxMessageSize: number;
}

/** `accept` is called for each new connection, paused; it returns what the connection's events go to. */
export function listenLocal(
  o: LocalOptions,
  log: Logger,
  accept: (side: LocalSide) => LocalEvents,
): TCPSocketListener<LocalState> {
  let nextId = 1;

  function open(socket: Socket<LocalState>): void {
    socket.timeout(0);
    socket.setNoDelay(true);
    // Nothing is read until the far side is there to take it.
    socket.pause();
    let lastWrite = Date.now();
    let bytesUp = 0;
    let bytesDown = 0;
    const id = nextId++;
    const toLocal = createOutbox(
      { write: (bytes) => socket.write(bytes), end: () => socket.end() },
      { maxPendingBytes: LOCAL_MAX_PENDING, onEmpty: () => state.events?.drained() },
    );
    const side: LocalSide = {
      id,
      address: socket.remoteAddress,
      write(frame) {
        if (state.closed) return;
        lastWrite = Date.now();
        bytesDown += frame.length;
        if (toLocal.enqueue(frame)) return;
        log.warn(
          "tunnel_local_slow",
          `Connection ${id}: the local side stopped reading (${toLocal.pendingBytes} bytes waiting); closing it`,
          { connection: id },
        );
        socket.terminate();
      },
      get pendingBytes() {
        return toLocal.pendingBytes;
      },
      get lastWrite() {
        return lastWrite;
      },
      pause: () => socket.pause(),
      resume: () => {
        if (!state.closed) socket.resume();
      },
      end: () => toLocal.endAfterFlush(),
      get bytesUp() {
        return bytesUp;
      },
      get bytesDown() {
        return bytesDown;
      },
    };
    const reader = createFrameReader(o.maxMessageSize, {
      frame(body) {
        bytesUp += body.length + 4;
        state.events?.frame(body);
      },
      oversized(length) {
        bytesUp += length + 4;
        log.warn(
          "tunnel_oversized",
          `Connection ${id}: a ${length}-byte frame is over --max-message-size (${o.maxMessageSize});` +
            ` skipped and answered as the relay would`,
          { connection: id, length },
        );
        side.write(encodeFrame({ type: "Error", message: WIRE_ERRORS.tooLarge(length, o.maxMessageSize) }));
      },
    });
    const state: LocalState = { side, events: null, reader, toLocal, closed: false };
    socket.data = state;
    state.events = accept(side);
  }

  return Bun.listen<LocalState>({
    hostname: o.host,
    port: o.port,
    socket: {
      open,
      data(socket, chunk) {
        const state = socket.data;
        state.reader.push(chunk);
        if (chunk.length <= 4 && state.reader.midFrame) state.events?.loneHeader();
      },
      drain: (socket) => socket.data.toLocal.flush(),
      close(socket) {
        const state = socket.data;
        if (!state || state.closed) return;
        state.closed = true;
        state.reader.stop();
        state.toLocal.clear();
        state.events?.closed();
      },
      error() {},
    },
  });
}
