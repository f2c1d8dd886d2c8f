/**
 * The live connections of every transport (TCP here, WebSocket in
 * src/transport/websocket.ts), for what looks across all of them: the shutdown's
 * "everything sent" check, relieving memory pressure, and the bounded close.
 */
import type { Logger } from "../lib/log.ts";
import { createBudget, type Outbox, type PendingBudget } from "../lib/outbox.ts";
import type { Connection, Relay, Session } from "../core/index.ts";

/**
 * A close the relay decides is over within this, whether or not the peer reads:
 * waiting for a non-reader's queue to drain held its socket, queue and address slot forever.
 */
export const CLOSE_LINGER_MS = 5_000;
/** Under pressure, a connection holding unsent data that has taken nothing for this long is cut first. */
const STALLED_MS = 1_000;
/** A member holding this much unsent data puts its session among those slowed down under pressure. */
const BEHIND_BYTES = 256 * 1024;
/** Under pressure longer than this, the largest holders are cut even if they read. */
const PRESSURE_GRACE_MS = 3_000;

export interface Live {
  readonly conn: Connection;
  readonly outbox: Outbox;
  /** Slowing a sender down under memory pressure (TCP backpressure); transports that cannot, leave these out. */
  pauseReading?(): void;
  resumeReading?(): void;
}

/** A connection whose transport leaves the close's time bound to the table (TCP, WebSocket). */
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
  /** For transports that keep their own state (WebSocket): adds, and returns the release (on close). */
  track(live: Lingering): () => void;
  /** Call when an outbox may have emptied: the shutdown waits for all of them. */
  checkQuiet(): void;
  /** `done` runs once nothing is left unsent (now, if so already); null stops waiting. */
  whenQuiet(done: (() => void) | null): void;
  /** Starts the close's time bound. */
  closeBounded(conn: Lingering): void;
  /** The connection closed by itself within its bound. */
  closedInTime(conn: Lingering): void;
  /** Relieves lasting memory pressure and force-closes the connections past their bound; call from the tick. */
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

  // The relay-wide bound. Pressure is relieved first by cutting the connections that
  // cause it: those holding unsent data that have taken nothing for a while (a pause of
  // everyone let ten non-reading strangers stop every concert on the relay). What is left
  // is instances that read, only not as fast as others send: the senders of their
  // sessions are slowed down (reading from them pauses, TCP backpressure) until the
  // unsent data halves. If it
  // has not halved within the grace period, the connections holding the most are cut.
  let pressureEpisodes = 0;
  let pressureLoggedAt = 0;
  let pressureSince = 0;
  let relieving = false;
  const paused = new Set<Live>();
  const budget = createBudget(maxTotalPendingBytes, (over) => {
    if (!over) {
      pressureSince = 0;
      for (const l of paused) l.resumeReading?.();
      paused.clear();
      return;
    }
    pressureSince = Date.now();
    pressureEpisodes++;
    if (relieving) return;
    relieving = true;
    // After the frame being handled: everyone hears the current update before hearing who left.
    queueMicrotask(() => {
      relieving = false;
      relieve(Date.now());
    });
  });

  function largest(accept: (l: Live) => boolean): Live | null {
    let worst: Live | null = null;
    for (const l of live) {
      if (l.conn.state !== "closed" && l.outbox.liveBytes > (worst?.outbox.liveBytes ?? 0) && accept(l)) worst = l;
    }
    return worst;
  }

  function cutWhileOver(accept: (l: Live) => boolean): number {
    let cut = 0;
    while (budget.used > budget.limit / 2) {
      const worst = largest(accept);
      if (worst === null) break;
      // The cut drops what had not started to go out and queues the last word.
      relay.cut(worst.conn, "memory_pressure");
      cut++;
    }
    return cut;
  }

  function relieve(now: number): void {
    if (!budget.over) return;
    const stalled = cutWhileOver((l) => now - l.outbox.lastProgress >= STALLED_MS);
    const overdue = now - pressureSince >= PRESSURE_GRACE_MS ? cutWhileOver(() => true) : 0;
    if (budget.over) {
      // Only the sessions whose members are behind are slowed down: a session of
      // strangers filling the bound must not stall the concerts next to it.
      const behind = new Set<Session>();
      for (const l of live) {
        const session = l.conn.instance?.session;
        if (session && l.outbox.liveBytes >= BEHIND_BYTES) behind.add(session);
      }
      for (const l of live) {
        if (l.conn.state !== "registered" || paused.has(l) || !l.pauseReading) continue;
        if (!behind.has(l.conn.instance!.session)) continue;
        l.pauseReading();
        paused.add(l);
      }
    }
    if ((stalled > 0 || overdue > 0 || paused.size > 0) && now - pressureLoggedAt >= 10_000) {
      const message =
        `Unsent data for all connections passed ${maxTotalPendingBytes} bytes:` +
        ` cut ${stalled} that stopped reading and ${overdue} holding the most;` +
        ` reading from senders paused until it halves (${pressureEpisodes} times so far)`;
      log.warn("backpressure", message, {
        reason: "total_pending",
        episodes: pressureEpisodes,
        cut: stalled + overdue,
      });
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
      paused.delete(l);
    },
    track(entry) {
      live.add(entry);
      return () => {
        live.delete(entry);
        paused.delete(entry);
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
      relieve(now);
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
