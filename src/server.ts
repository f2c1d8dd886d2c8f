/**
 * The edge between Bun's sockets and the relay: each accepted socket gets a
 * frame reader (bytes in), an outbox (bytes out, with partial writes and
 * drain) and a relay connection. Nothing here decides anything about the protocol.
 */
import type { Socket, TCPSocketListener } from "bun";
import type { RelayConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import { createFrameReader, type FrameReader } from "./protocol/framing.ts";
import { createBudget, createOutbox, type Outbox } from "./net/outbox.ts";
import { createRelay, type Connection, type Relay } from "./relay/relay.ts";

/** Half-open peers (laptop lid shut, cable pulled) are found by TCP keepalive after this. */
export const KEEPALIVE_IDLE_MS = 30_000;
/** After we end a connection, a peer that never closes its side is cut after this. */
const LINGER_SECONDS = 5;
const TICK_MS = 250;

interface SocketState {
  conn: Connection;
  reader: FrameReader;
  outbox: Outbox;
}

export interface RunningServer {
  readonly relay: Relay;
  readonly host: string;
  readonly port: number;
  /** Stop accepting, flush queues (up to the shutdown timeout), close everyone. */
  shutdown(why: string): Promise<void>;
  readonly stopping: boolean;
}

export type ServerConfig = Pick<
  RelayConfig,
  | "host"
  | "port"
  | "maxInstances"
  | "rateLimit"
  | "maxMessageSize"
  | "maxPendingBytes"
  | "maxTotalPendingBytes"
  | "handshakeTimeout"
  | "idleTimeout"
  | "expectedVersion"
  | "tokens"
  | "shutdownTimeout"
>;

export function startServer(config: ServerConfig, log: Logger): RunningServer {
  const relay = createRelay(
    {
      expectedVersion: config.expectedVersion,
      maxInstances: config.maxInstances,
      rateLimit: config.rateLimit,
      maxMessageSize: config.maxMessageSize,
      tokens: config.tokens,
      handshakeTimeoutMs: config.handshakeTimeout * 1000,
      idleTimeoutMs: config.idleTimeout * 1000,
    },
    log,
  );
  const sockets = new Set<Socket<SocketState>>();
  // Under sustained overload this flips many times a second: log one line per 10 s, with a count.
  let pressureEpisodes = 0;
  let pressureLoggedAt = 0;
  const budget = createBudget(config.maxTotalPendingBytes, (over) => {
    if (over) {
      pressureEpisodes++;
      const now = Date.now();
      if (now - pressureLoggedAt >= 10_000) {
        log.warn("backpressure", `Unsent data for all instances passed ${config.maxTotalPendingBytes} bytes: reading paused until it halves (${pressureEpisodes} times so far)`, {
          reason: "total_pending",
          episodes: pressureEpisodes,
        });
        pressureLoggedAt = now;
      }
    }
    for (const s of sockets) {
      if (over) s.pause();
      else s.resume();
    }
  });
  let onQuiet: (() => void) | null = null;

  function checkQuiet(): void {
    if (onQuiet === null) return;
    for (const s of sockets) if (s.data.outbox.pendingBytes > 0) return;
    onQuiet();
  }

  let onAllClosed: (() => void) | null = null;

  const listener: TCPSocketListener<SocketState> = Bun.listen<SocketState>({
    hostname: config.host,
    port: config.port,
    socket: {
      open(socket) {
        socket.setNoDelay(true);
        socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
        const outbox = createOutbox(
          {
            write: (bytes) => {
              const n = socket.write(bytes);
              if (n > 0) relay.stats.bytesOut += n;
              return n;
            },
            end: () => {
              socket.end();
              socket.timeout(LINGER_SECONDS);
            },
          },
          { maxPendingBytes: config.maxPendingBytes, budget, onEmpty: checkQuiet },
        );
        const state = { outbox } as SocketState;
        const conn = relay.open({
          address: socket.remoteAddress,
          port: socket.remotePort,
          get pendingBytes() {
            return outbox.pendingBytes;
          },
          send: (frame) => outbox.enqueue(frame),
          close() {
            state.reader.stop();
            outbox.endAfterFlush();
          },
          terminate() {
            state.reader.stop();
            outbox.clear();
            socket.terminate();
          },
        });
        state.conn = conn;
        state.reader = createFrameReader(config.maxMessageSize, {
          frame: (body) => relay.receive(conn, body),
          oversized: (length) => relay.oversized(conn, length),
        });
        socket.data = state;
        sockets.add(socket);
        if (budget.over) socket.pause();
      },
      data(socket, chunk) {
        relay.stats.bytesIn += chunk.length;
        socket.data.reader.push(chunk);
      },
      drain(socket) {
        socket.data.outbox.flush();
      },
      error(socket, error) {
        log.debug("socket_error", `Socket error from ${socket.remoteAddress}: ${error.message}`, { ip: socket.remoteAddress, reason: error.message });
        relay.closed(socket.data.conn, "error");
      },
      timeout(socket) {
        socket.terminate();
      },
      close(socket, error) {
        const state = socket.data;
        sockets.delete(socket);
        if (!state?.conn) return;
        state.outbox.clear();
        relay.closed(state.conn, error ? "error" : "closed");
        checkQuiet();
        if (sockets.size === 0) onAllClosed?.();
      },
    },
  });

  const ticker = setInterval(() => relay.tick(), TICK_MS);
  let stopping = false;

  async function shutdown(why: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    const deadlineMs = config.shutdownTimeout * 1000;
    log.info("shutdown", `${why}: shutting down, ${relay.instanceCount} instances connected; flushing queued frames (up to ${config.shutdownTimeout} s)`, {
      reason: why,
      instances: relay.instanceCount,
    });
    listener.stop(false);
    relay.beginShutdown();
    const flushed = await within(deadlineMs, (done) => {
      onQuiet = done;
      checkQuiet();
    });
    onQuiet = null;
    relay.closeAll();
    const closed = await within(1000, (done) => {
      onAllClosed = done;
      if (sockets.size === 0) done();
    });
    for (const s of sockets) s.terminate();
    clearInterval(ticker);
    listener.stop(true);
    log.info("shutdown_complete", `Shutdown complete${flushed ? "" : " (flush deadline passed; some queued frames were not sent)"}${closed ? "" : " (some peers did not close in time)"}`, {
      flushed,
    });
  }

  return {
    relay,
    host: listener.hostname,
    port: listener.port,
    shutdown,
    get stopping() {
      return stopping;
    },
  };
}

/** Resolves true when `start` calls done, false when `ms` pass first. */
function within(ms: number, start: (done: () => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    start(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
