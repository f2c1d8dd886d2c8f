/**
 * The TCP edge: each accepted socket becomes a `TcpLink`, a frame reader (bytes
 * in), an outbox (bytes out, with partial writes and drain) and the relay `Peer`
 * over both; and the socket handlers the plain and the TLS listener share.
 * Nothing here decides anything about the protocol.
 */
import type { Socket, SocketHandler } from "bun";
import type { LogEvent, Logger } from "../lib/log.ts";
import { addressGroup } from "../lib/cidr.ts";
import { createOutbox, type Outbox } from "../lib/outbox.ts";
import { createFrameReader, type FrameReader, type FrameSink } from "../protocol/framing.ts";
import type { Guard, Refusal } from "./guard.ts";
import type { Connection, Peer, Relay } from "../core/index.ts";
import type { Repeats } from "../lib/repeats.ts";
import type { ConnectionTable, Lingering } from "./connections.ts";

/** Half-open peers (laptop lid shut, cable pulled) are found by TCP keepalive after this. */
export const KEEPALIVE_IDLE_MS = 30_000;

const REFUSAL_TEXT: Record<Refusal, string> = {
  denied: "address is in a --deny range",
  not_allowed: "address is outside every --allow range",
  per_ip_limit: "too many connections from this address",
};

export interface TcpOptions {
  maxMessageSize: number;
  maxPendingBytes: number;
}

export interface TcpDeps {
  relay: Relay;
  guard: Guard;
  table: ConnectionTable;
  log: Logger;
  /** The server's own repeated lines (failed TLS handshakes). */
  repeats: Repeats<LogEvent>;
}

/**
 * One accepted socket, whole from its construction: the relay connection is opened
 * last, on the link itself as its `Peer`, and frames reach the relay through the
 * link as the reader's sink, so nothing is filled in after the fact.
 */
export class TcpLink implements Peer, FrameSink, Lingering {
  readonly address: string;
  readonly port: number;
  readonly outbox: Outbox;
  readonly reader: FrameReader;
  readonly conn: Connection;
  closeBy: number;
  private readonly _socket: Socket<TcpLink>;
  private readonly _relay: Relay;
  private readonly _table: ConnectionTable;

  constructor(socket: Socket<TcpLink>, options: TcpOptions, relay: Relay, table: ConnectionTable) {
    this._socket = socket;
    this._relay = relay;
    this._table = table;
    this.address = socket.remoteAddress;
    this.port = socket.remotePort;
    this.closeBy = 0;
    this.outbox = createOutbox(
      {
        write: (bytes) => {
          const n = socket.write(bytes);
          if (n > 0) relay.stats.bytesOut += n;
          return n;
        },
        end: () => socket.end(),
      },
      { maxPendingBytes: options.maxPendingBytes, budget: table.budget, onEmpty: table.checkQuiet },
    );
    this.reader = createFrameReader(options.maxMessageSize, this);
    this.conn = relay.open(this);
  }

  // FrameSink: what the reader found.
  frame(body: Uint8Array): void {
    this._relay.receive(this.conn, body);
  }

  oversized(length: number): void {
    this._relay.oversized(this.conn, length);
  }

  // Peer: what the relay asks for.
  get pendingBytes(): number {
    return this.outbox.pendingBytes;
  }

  get frontBytes(): number {
    return this.outbox.frontBytes;
  }

  send(frame: Uint8Array, front?: boolean, own?: boolean): boolean {
    return this.outbox.enqueue(frame, front, own);
  }

  // Nothing more is read from a connection being closed: a stranger streaming
  // megabytes after its one Error meets TCP flow control instead of our CPU.
  close(): void {
    this.reader.stop();
    this._socket.pause();
    this._table.closeBounded(this);
    this.outbox.endAfterFlush();
  }

  closeWith(last: Uint8Array): void {
    this.reader.stop();
    this._socket.pause();
    this._table.closeBounded(this);
    this.outbox.endWith(last);
  }

  terminate(): void {
    this.reader.stop();
    this.outbox.clear();
    this._socket.terminate();
  }

  setFrameLimit(bytes: number): void {
    this.reader.setMaxFrameSize(bytes);
  }

  // Live: slowed down while the relay's unsent data is over its bound.
  pauseReading(): void {
    this._socket.pause();
  }

  resumeReading(): void {
    if (this.closeBy === 0) this._socket.resume();
  }

  // Lingering: the close's time bound ran out.
  get remoteAddress(): string {
    return this._socket.remoteAddress;
  }

  forceClose(): void {
    this._socket.terminate();
  }
}

export interface TcpEdge {
  /** For both listeners; the relay cannot tell plain from TLS. */
  readonly handlers: SocketHandler<TcpLink>;
  /** The handlers' `open`. */
  accept(socket: Socket<TcpLink>): void;
  /** Accepted sockets not closed yet. */
  readonly openCount: number;
  /** `done` runs when the last accepted socket closes. */
  onAllClosed(done: () => void): void;
  terminateAll(): void;
}

export function createTcpEdge(options: TcpOptions, deps: TcpDeps): TcpEdge {
  const { relay, guard, table, log, repeats } = deps;
  const sockets = new Set<Socket<TcpLink>>();
  let allClosed: (() => void) | null = null;

  function refuse(socket: Socket<TcpLink>, refusal: Refusal): void {
    const ip = socket.remoteAddress;
    relay.stats.connectionsRefused++;
    if (guard.shouldLog(ip, Date.now())) {
      log.warn(
        "connection_refused",
        `Connection from ${ip} refused: ${REFUSAL_TEXT[refusal]} (logged once a minute per address)`,
        { ip, reason: refusal },
      );
    }
    socket.terminate();
  }

  function accept(socket: Socket<TcpLink>): void {
    const refusal = guard.admit(socket.remoteAddress, Date.now());
    if (refusal !== null) return refuse(socket, refusal);
    // Bun gives accepted sockets a 120 s timeout that traffic does not reset, and
    // closes the socket when it fires: every instance would be dropped two minutes
    // into a concert (found by the soak run). Silence is handled by our own timers.
    socket.timeout(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    const link = new TcpLink(socket, options, relay, table);
    socket.data = link;
    sockets.add(socket);
    table.add(link);
  }

  const handlers: SocketHandler<TcpLink> = {
    open: accept,
    handshake(socket, success, authorizationError) {
      // A port scanner makes one of these per connect: one line a minute per address, with a count.
      const ip = socket.remoteAddress;
      if (!success && repeats.first("tls_handshake_failed", addressGroup(ip), Date.now(), { ip, level: "warn" })) {
        log.warn(
          "tls_handshake_failed",
          `TLS handshake with ${ip} failed${authorizationError ? `: ${authorizationError.message}` : ""}`,
          {
            ip,
            reason: authorizationError?.message ?? "handshake failed",
          },
        );
      }
    },
    data(socket, chunk) {
      relay.stats.bytesIn += chunk.length;
      const link = socket.data;
      if (!link) return;
      link.reader.push(chunk);
      if (chunk.length <= 4 && link.reader.midFrame) relay.answerLoneHeader(link.conn);
    },
    drain(socket) {
      socket.data?.outbox.flush();
    },
    error(socket, error) {
      log.debug("socket_error", `Socket error from ${socket.remoteAddress}: ${error.message}`, {
        ip: socket.remoteAddress,
        reason: error.message,
      });
      if (socket.data) relay.closed(socket.data.conn, "error");
    },
    timeout(socket) {
      socket.terminate();
    },
    close(socket, error) {
      const link = socket.data;
      if (!link) return; // refused before it was accepted
      if (sockets.delete(socket)) guard.release(socket.remoteAddress);
      table.delete(link);
      table.closedInTime(link);
      link.outbox.clear();
      relay.closed(link.conn, error ? "error" : "closed");
      table.checkQuiet();
      if (sockets.size === 0) allClosed?.();
    },
  };

  return {
    handlers,
    accept,
    get openCount() {
      return sockets.size;
    },
    onAllClosed(done) {
      allClosed = done;
    },
    terminateAll() {
      for (const s of sockets) s.terminate();
    },
  };
}
