/**
 * The live connections of every transport (each a `Link`, src/transport/edge.ts),
 * for what looks across all of them: the shutdown's "everything sent" and
 * "everyone gone" checks, relieving memory pressure, and the bounded close.
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

/** A connection as the table sees it. */
export interface Live {
  readonly conn: Connection;
  readonly outbox: Outbox;
  /** Slowing a sender down under memory pressure (TCP backpressure); a no-op where the transport cannot. */
  pauseReading(): void;
  resumeReading(): void;
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
  /** The connection is gone. */
  delete(live: Live): void;
  /** Connections not gone yet, of every transport. */
  readonly size: number;
  /** Call when an outbox may have emptied: the shutdown waits for all of them. */
  checkQuiet(): void;
  /** `done` runs once nothing is left unsent (now, if so already); null stops waiting. */
  whenQuiet(done: (() => void) | null): void;
  /** `done` runs once every connection is gone (now, if so already); null stops waiting. */
  whenEmpty(done: (() => void) | null): void;
  /** End every connection now (the shutdown's last step). */
  terminateAll(): void;
  /** Starts the close's time bound. */
  closeBounded(live: Live): void;
  /** The connection closed by itself within its bound. */
  closedInTime(live: Live): void;
  /** Relieves lasting memory pressure and force-closes the connections past their bound; call from the tick. */
  sweep(now: number): void;
}

export function createConnectionTable(relay: Relay, log: Logger, maxTotalPendingBytes: number): ConnectionTable {
  const live = new Set<Live>();
  const closing = new Set<Live>();
  let onQuiet: (() => void) | null = null;
  let onEmpty: (() => void) | null = null;

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
      for (const l of paused) l.resumeReading();
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
        if (l.conn.state !== "registered" || paused.has(l)) continue;
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
      if (live.size === 0) onEmpty?.();
    },
    get size() {
      return live.size;
    },
    checkQuiet,
    whenQuiet(done) {
      onQuiet = done;
      checkQuiet();
    },
    whenEmpty(done) {
      onEmpty = done;
      if (live.size === 0) onEmpty?.();
    },
    terminateAll() {
      for (const l of [...live]) l.forceClose();
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
