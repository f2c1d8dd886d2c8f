/**
 * The live connections of every transport (TCP here, WebSocket in
 * src/net/websocket.ts), for what looks across all of them: the shutdown's
 * "everything sent" check, relieving memory pressure, and the bounded close.
 */
import type { Logger } from "../log.ts";
import { createBudget, type Outbox, type PendingBudget } from "../net/outbox.ts";
import type { Connection, Relay } from "../relay/relay.ts";

/**
 * A close the relay decides is over within this, whether or not the peer reads:
 * waiting for a non-reader's queue to drain held its socket, queue and address slot forever.
 */
export const CLOSE_LINGER_MS = 5_000;

export interface Live {
  readonly conn: Connection;
  readonly outbox: Outbox;
}

/** A connection whose transport leaves the close's time bound to the table (TCP). */
export interface Lingering extends Live {
  /** When a close the relay decided becomes a terminate; 0 while open. */
  closeBy: number;
  readonly remoteAddress: string;
  /** End the transport now, queued bytes and all. */
  forceClose(): void;
}

export interface ConnectionTable {
  /** Shared by every outbox: past its limit, the connections holding the most are cut. */
  readonly budget: PendingBudget;
  add(live: Live): void;
  delete(live: Live): void;
  /** For transports that keep their own state (WebSocket): adds, and returns the release. */
  track(conn: Connection, outbox: Outbox): () => void;
  /** Call when an outbox may have emptied: the shutdown waits for all of them. */
  checkQuiet(): void;
  /** `done` runs once nothing is left unsent (now, if so already); null stops waiting. */
  whenQuiet(done: (() => void) | null): void;
  /** Starts the close's time bound. */
  closeBounded(conn: Lingering): void;
  /** The connection closed by itself within its bound. */
  closedInTime(conn: Lingering): void;
  /** Force-closes the connections past their bound; call from the tick. */
  sweep(now: number): void;
}

export function createConnectionTable(relay: Relay, log: Logger, maxTotalPendingBytes: number): ConnectionTable {
  const live = new Set<Live>();
  const closing = new Set<Lingering>();
  let onQuiet: (() => void) | null = null;

  function checkQuiet(): void {
    if (onQuiet === null) return;
    for (const l of live) if (l.outbox.pendingBytes > 0) return;
    onQuiet();
  }

  // Pressure is relieved by cutting the connections that hold the most, never by
  // pausing everyone: a pause let ten non-reading strangers stop every concert on the relay.
  let pressureEpisodes = 0;
  let pressureLoggedAt = 0;
  let relieving = false;
  const budget = createBudget(maxTotalPendingBytes, (over) => {
    if (!over || relieving) return;
    relieving = true;
    // After the frame being handled: everyone hears the current update before hearing who left.
    queueMicrotask(relieve);
  });

  function relieve(): void {
    relieving = false;
    pressureEpisodes++;
    let cut = 0;
    while (budget.used > budget.limit / 2) {
      let worst: Live | null = null;
      for (const l of live)
        if (l.conn.state !== "closed" && l.outbox.liveBytes > (worst?.outbox.liveBytes ?? 0)) worst = l;
      if (worst === null) break;
      // The cut drops what had not started to go out and queues the last word.
      relay.cut(worst.conn, "memory_pressure");
      cut++;
    }
    const now = Date.now();
    if (now - pressureLoggedAt >= 10_000) {
      const message = `Unsent data for all connections passed ${maxTotalPendingBytes} bytes: cut ${cut} connections holding the most (${pressureEpisodes} times so far)`;
      log.warn("backpressure", message, { reason: "total_pending", episodes: pressureEpisodes, cut });
      pressureLoggedAt = now;
    }
  }

  return {
    budget,
    add(l) {
      live.add(l);
    },
    delete(l) {
      live.delete(l);
    },
    track(conn, outbox) {
      const entry = { conn, outbox };
      live.add(entry);
      return () => {
        live.delete(entry);
        checkQuiet();
      };
    },
    checkQuiet,
    whenQuiet(done) {
      onQuiet = done;
      checkQuiet();
    },
    closeBounded(conn) {
      conn.closeBy = Date.now() + CLOSE_LINGER_MS;
      closing.add(conn);
    },
    closedInTime(conn) {
      closing.delete(conn);
    },
    sweep(now) {
      for (const c of closing) {
        if (c.closeBy > now) continue;
        closing.delete(c);
        log.debug(
          "close_forced",
          `Connection from ${c.remoteAddress} did not take its last bytes within ${CLOSE_LINGER_MS / 1000} s; closed`,
          {
            ip: c.remoteAddress,
            pending_bytes: c.outbox.pendingBytes,
          },
        );
        c.forceClose();
      }
    },
  };
}
