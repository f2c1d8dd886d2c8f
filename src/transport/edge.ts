/**
 * The connection edge every transport shares: what one connection does for the
 * relay, whatever carries its bytes. A `Link` is the relay's `Peer` (the outbox
 * with its bounds, the last word, the close bounded in time), the connection
 * table's entry (memory pressure, the shutdown's quiet signal) and the way in
 * for what the transport read (frames, byte counts). A transport supplies only a
 * `Carrier` (how bytes are written, how the connection ends, pause and resume
 * where it can) and tells the link what it read and when the connection went:
 * TCP and TLS in tcp.ts, WebSocket in websocket.ts.
 */
import type { Logger } from "../lib/log.ts";
import { type ByteSink, createOutbox, type Outbox } from "../lib/outbox.ts";
import { createFrameReader, type FrameReader } from "../protocol/framing.ts";
import type { Connection, Peer, Relay } from "../core/index.ts";
import type { DisconnectReason } from "../core/stats.ts";
import type { ConnectionTable, Live } from "./connections.ts";
import type { Guard, Refusal } from "./guard.ts";

/** How a transport moves bytes and ends a connection. */
export interface Carrier {
  /** Bytes taken: all, fewer, or 0 while the transport is full (it calls the link's `drained` later); -1 once gone. */
  write(bytes: Uint8Array): number;
  /** End the connection once what was written has gone out. */
  end(): void;
  /** End it now, whatever is left. */
  terminate(): void;
  /**
   * Stop and restart reading, so a sender meets TCP backpressure (memory pressure, a
   * connection being closed); a transport that cannot, leaves them out.
   */
  pause?(): void;
  resume?(): void;
}

/** One transport's share of the relay's totals (what /metrics shows by transport). */
export interface TransportCounts {
  opened: number;
  open: number;
  bytesIn: number;
  bytesOut: number;
}

/** What every link of a transport shares. */
export interface EdgeContext {
  readonly relay: Relay;
  readonly guard: Guard;
  readonly table: ConnectionTable;
  readonly log: Logger;
  /** The slow-consumer bound of each outbox (--max-pending-bytes). */
  readonly maxPendingBytes: number;
  /** Counted besides the relay's totals, when the transport's own figures are shown. */
  readonly counts?: TransportCounts;
}

export const REFUSAL_TEXT: Record<Refusal, string> = {
  denied: "address is in a --deny range",
  not_allowed: "address is outside every --allow range",
  per_ip_limit: "too many connections from this address",
};

/**
 * Counts and logs a connection the guard refused (a line a minute per address, so a
 * scan cannot flood the log); returns what the refusal says, for transports that answer.
 */
export function refused(
  ctx: Pick<EdgeContext, "relay" | "guard" | "log">,
  ip: string,
  refusal: Refusal,
  transport?: string,
): string {
  const text = REFUSAL_TEXT[refusal];
  ctx.relay.stats.connectionsRefused++;
  if (ctx.guard.shouldLog(ip, Date.now())) {
    ctx.log.warn("connection_refused", `Connection from ${ip} refused: ${text} (logged once a minute per address)`, {
      ip,
      reason: refusal,
      ...(transport ? { transport } : {}),
    });
  }
  return text;
}

/** The carrier as the outbox writes to it, counting what went out (a class: one object per connection, no closures). */
class CountingSink implements ByteSink {
  private readonly _ctx: EdgeContext;
  private readonly _carrier: Carrier;

  constructor(ctx: EdgeContext, carrier: Carrier) {
    this._ctx = ctx;
    this._carrier = carrier;
  }

  write(bytes: Uint8Array): number {
    const n = this._carrier.write(bytes);
    if (n > 0) {
      this._ctx.relay.stats.bytesOut += n;
      if (this._ctx.counts) this._ctx.counts.bytesOut += n;
    }
    return n;
  }

  end(): void {
    this._carrier.end();
  }
}

/**
 * One connection, from the guard's admission (its slot is released when the
 * transport reports the connection gone) to its end. Create it, make it findable
 * by the transport's close handler, then `open` it: the relay may end it at once.
 */
export class Link implements Peer, Live {
  readonly address: string;
  readonly port: number;
  readonly outbox: Outbox;
  /** Set by `open`. */
  conn!: Connection;
  closeBy = 0;
  private readonly _ctx: EdgeContext;
  private readonly _carrier: Carrier;
  /** For byte-stream transports only (`bytes`); message transports deliver whole frames (`message`). */
  private _reader: FrameReader | null = null;
  private _frameLimit = Number.MAX_SAFE_INTEGER;
  private _reading = true;
  private _gone = false;

  constructor(ctx: EdgeContext, carrier: Carrier, address: string, port: number) {
    this._ctx = ctx;
    this._carrier = carrier;
    this.address = address;
    this.port = port;
    // Every transport's empty queue tells the table: the shutdown waits for all of them.
    this.outbox = createOutbox(new CountingSink(ctx, carrier), {
      maxPendingBytes: ctx.maxPendingBytes,
      budget: ctx.table.budget,
      onEmpty: ctx.table.checkQuiet,
    });
  }

  /** Hands the connection to the relay (and the table); returns the relay's record of it. */
  open(): Connection {
    const { counts } = this._ctx;
    if (counts) {
      counts.opened++;
      counts.open++;
    }
    this._ctx.table.add(this);
    this.conn = this._ctx.relay.open(this);
    return this.conn;
  }

  // What the transport read.

  /** A byte stream's next bytes (TCP): split into frames here. */
  bytes(chunk: Uint8Array): void {
    this._countIn(chunk.length);
    if (!this._reading) return;
    this._reader ??= createFrameReader(this._frameLimit, {
      frame: (body) => this._ctx.relay.receive(this.conn, body),
      oversized: (length) => this._ctx.relay.oversized(this.conn, length),
    });
    this._reader.push(chunk);
    // A header alone: the peer's kernel may be holding the body back (Nagle) until it hears from us.
    if (chunk.length <= 4 && this._reader.midFrame) this._ctx.relay.answerLoneHeader(this.conn);
  }

  /** One whole frame body (a WebSocket message), counted as frame bytes as on TCP so totals compare. */
  message(body: Uint8Array): void {
    this._countIn(body.length + 4);
    if (!this._reading) return;
    if (body.length > this._frameLimit) this._ctx.relay.oversized(this.conn, body.length);
    else this._ctx.relay.receive(this.conn, body);
  }

  /** A frame past the bound that the transport dropped unseen (Bun closes such a WebSocket itself). */
  droppedOversized(): void {
    this._ctx.relay.stats.drops.oversized++;
    if (this.conn?.instance) this.conn.instance.dropped++;
  }

  /** The transport can take bytes again. */
  drained(): void {
    this.outbox.flush();
  }

  /**
   * The transport ends the connection for a reason of its own (a WebSocket text
   * message): nothing more is read or sent, and the relay counts it under `reason`.
   */
  abandon(reason: DisconnectReason): void {
    this._stopReading();
    this.outbox.clear();
    if (this.conn) this._ctx.relay.closed(this.conn, reason);
  }

  /** The connection is gone (closed, reset, or ended by us): everything it held is let go, once. */
  gone(reason: DisconnectReason): void {
    if (this._gone) return;
    this._gone = true;
    this._reading = false;
    const { relay, guard, table, counts } = this._ctx;
    guard.release(this.address);
    if (counts) counts.open--;
    table.delete(this);
    table.closedInTime(this);
    this.outbox.clear();
    // Not there when the transport ended it inside relay.open, which has counted it.
    if (this.conn) relay.closed(this.conn, reason);
    table.checkQuiet();
  }

  // Peer: what the relay asks for.

  get pendingBytes(): number {
    return this.outbox.pendingBytes;
  }

  get frontBytes(): number {
    return this.outbox.frontBytes;
  }

  send(frame: Uint8Array, front?: boolean, own?: boolean, cost?: number): boolean {
    return this.outbox.enqueue(frame, front, own, cost);
  }

  close(): void {
    this._stopReading();
    this._ctx.table.closeBounded(this);
    this.outbox.endAfterFlush();
  }

  closeWith(last: Uint8Array): void {
    this._stopReading();
    this._ctx.table.closeBounded(this);
    this.outbox.endWith(last);
  }

  terminate(): void {
    this._stopReading();
    this.outbox.clear();
    this._carrier.terminate();
  }

  setFrameLimit(bytes: number): void {
    this._frameLimit = bytes;
    this._reader?.setMaxFrameSize(bytes);
  }

  // Live: what the connection table asks for.

  /** Slowed down while the relay's unsent data is over its bound. */
  pauseReading(): void {
    this._carrier.pause?.();
  }

  resumeReading(): void {
    if (this._reading && this.closeBy === 0) this._carrier.resume?.();
  }

  get remoteAddress(): string {
    return this.address;
  }

  /** The close's time bound ran out. */
  forceClose(): void {
    this._carrier.terminate();
  }

  private _countIn(n: number): void {
    this._ctx.relay.stats.bytesIn += n;
    if (this._ctx.counts) this._ctx.counts.bytesIn += n;
  }

  // Nothing more is read from a connection being closed: a stranger streaming
  // megabytes after its one Error meets TCP flow control instead of our CPU.
  private _stopReading(): void {
    if (!this._reading) return;
    this._reading = false;
    this._reader?.stop();
    this._carrier.pause?.();
  }
}
