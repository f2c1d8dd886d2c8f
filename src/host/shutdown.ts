/**
 * The shutdown sequence: stop accepting, let queued frames go out (up to the
 * shutdown timeout), close everyone, then release what the server holds.
 */
import type { LogEvent, Logger } from "../lib/log.ts";
import type { Relay } from "../core/index.ts";
import { reportRepeats, type Repeats } from "../lib/repeats.ts";
import type { ConnectionTable } from "../transport/connections.ts";
import type { Listeners } from "../transport/listeners.ts";

export interface ShutdownDeps {
  relay: Relay;
  log: Logger;
  listeners: Listeners;
  /** Every transport's connections. */
  table: ConnectionTable;
  repeats: Repeats<LogEvent>;
  stopTimers(): void;
  /** The history store, closed last. */
  closeStore(): void;
  /** Leaves the cluster (when a node): its instances are announced gone. */
  closeLink(): Promise<void> | undefined;
}

export async function shutDown(why: string, timeoutMs: number, deps: ShutdownDeps): Promise<void> {
  const { relay, log, listeners, table } = deps;
  log.info(
    "shutdown",
    `${why}: shutting down, ${relay.instanceCount} instances connected;` +
      ` flushing queued frames (up to ${timeoutMs / 1000} s)`,
    {
      reason: why,
      instances: relay.instanceCount,
    },
  );
  listeners.stopAccepting();
  relay.beginShutdown();
  const flushed = await within(timeoutMs, (done) => table.whenQuiet(done));
  table.whenQuiet(null);
  relay.closeAll();
  const closed = await within(1000, (done) => table.whenEmpty(done));
  table.whenEmpty(null);
  table.terminateAll();
  await deps.closeLink();
  deps.stopTimers();
  reportRepeats(log, deps.repeats.drain());
  listeners.close();
  deps.closeStore();
  log.info(
    "shutdown_complete",
    `Shutdown complete${flushed ? "" : " (flush deadline passed; some queued frames were not sent)"}` +
      `${closed ? "" : " (some peers did not close in time)"}`,
    {
      flushed,
    },
  );
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
