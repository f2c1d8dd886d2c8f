/**
 * The TCP edge: the socket handlers the plain and the TLS listener share. Each
 * accepted socket becomes a `Link` (src/transport/edge.ts) over a carrier that
 * writes, ends and pauses the socket; the link splits what it reads into frames.
 * Nothing here decides anything about the protocol.
 */
import type { Socket, SocketHandler } from "bun";
import type { LogEvent, Logger } from "../lib/log.ts";
import { addressGroup } from "../lib/cidr.ts";
import type { Guard } from "./guard.ts";
import type { Relay } from "../core/index.ts";
import type { Repeats } from "../lib/repeats.ts";
import type { ConnectionTable } from "./connections.ts";
import { type Carrier, Link, refused } from "./edge.ts";

/** Half-open peers (laptop lid shut, cable pulled) are found by TCP keepalive after this. */
export const KEEPALIVE_IDLE_MS = 30_000;

export interface TcpOptions {
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
 * How a TCP (or TLS) socket writes, ends and pauses; the rest of a connection is the shared `Link`. A class, not five
 * closures per socket: under a connect flood each was garbage within the second.
 */
class SocketCarrier implements Carrier {
  private readonly _socket: Socket<Link>;

  constructor(socket: Socket<Link>) {
    this._socket = socket;
  }

  write(bytes: Uint8Array): number {
    return this._socket.write(bytes);
  }

  end(): void {
    this._socket.end();
  }

  terminate(): void {
    this._socket.terminate();
  }

  pause(): void {
    this._socket.pause();
  }

  resume(): void {
    this._socket.resume();
  }
}

export interface TcpEdge {
  /** For both listeners; the relay cannot tell plain from TLS. */
  readonly handlers: SocketHandler<Link>;
  /** The handlers' `open`. */
  accept(socket: Socket<Link>): void;
}

export function createTcpEdge(options: TcpOptions, deps: TcpDeps): TcpEdge {
  const { relay, guard, table, log, repeats } = deps;
  const edge = { relay, guard, table, log, maxPendingBytes: options.maxPendingBytes };

  function accept(socket: Socket<Link>): void {
    const ip = socket.remoteAddress;
    const refusal = guard.admit(ip, Date.now());
    if (refusal !== null) {
      refused(edge, ip, refusal);
      socket.terminate();
      return;
    }
    // Bun gives accepted sockets a 120 s timeout that traffic does not reset, and
    // closes the socket when it fires: every instance would be dropped two minutes
    // into a concert (found by the soak run). Silence is handled by our own timers.
    socket.timeout(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.data = new Link(edge, new SocketCarrier(socket), ip, socket.remotePort);
    socket.data.open();
  }

  const handlers: SocketHandler<Link> = {
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
      socket.data?.bytes(chunk);
    },
    drain(socket) {
      socket.data?.drained();
    },
    error(socket, error) {
      log.debug("socket_error", `Socket error from ${socket.remoteAddress}: ${error.message}`, {
        ip: socket.remoteAddress,
        reason: error.message,
      });
      socket.data?.gone("error");
    },
    timeout(socket) {
      socket.terminate();
    },
    close(socket, error) {
      // No link: refused before it was accepted.
      socket.data?.gone(error ? "error" : "closed");
    },
  };

  return { handlers, accept };
}
