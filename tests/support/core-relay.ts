/**
 * The relay core (src/core/) without a socket, reached by the contract suite:
 * the relay the host builds from the same flags (buildRelay, which calls
 * createRelay), its tick and nudge driven by timers as the host drives them,
 * and each connection an in-memory `Peer`. A peer queues through the
 * transports' own outbox (its bound, the last word, a close after the queue),
 * so a peer that stops reading is cut as on a socket; bytes cross in a
 * microtask each way, never inside the call that sent them.
 *
 * Whole frame bodies go in, as a WebSocket delivers them: framing belongs to
 * the transports, so the byte-stream cases do not run here.
 */
import type { Connection, Relay } from "../../src/core/index.ts";
import { resolveConfig } from "../../src/host/config.ts";
import { buildRelay } from "../../src/host/setup.ts";
import { createLogger } from "../../src/lib/log.ts";
import { createOutbox } from "../../src/lib/outbox.ts";
import { type Channel, frameSplitter, type Sleeper } from "./channels.ts";
import { registerBody } from "./peers.ts";
import { outboxPeer } from "./fake-peer.ts";
import { logWatcher } from "./relay.ts";
import type { Reached, Runner } from "./runners.ts";

/**
 * How often deadlines are checked. The host ticks every 250 ms; finer here only
 * ends the cases that wait out a deadline sooner. The nudge cadence is the host's.
 */
const TICK_MS = 50;

interface MemoryChannel extends Channel {
  /** The relay is gone: end without telling it. */
  drop(): void;
}

let nextPort = 40000;

/** One connection to `relay`; a peer with `reading` false takes nothing the relay sends it. */
function openMemory(relay: Relay, maxPendingBytes: number, reading: boolean): MemoryChannel {
  const handlers: Array<(body: Uint8Array) => void> = [];
  const reader = frameSplitter(handlers);
  const { promise: closed, resolve: gone } = Promise.withResolvers<void>();
  let open = true;
  let frameLimit = Number.MAX_SAFE_INTEGER;
  let conn: Connection | null = null;

  // Either side ending, as a socket's close handler reports it (a no-op for the relay when it ended it).
  function end(): void {
    if (!open) return;
    open = false;
    outbox.clear();
    gone();
    if (conn) relay.closed(conn, "closed");
  }

  const outbox = createOutbox(
    {
      write(bytes) {
        if (!open) return -1;
        if (!reading) return 0;
        // A copy: the outbox writes merged frames from one area it reuses once this returns.
        const copy = bytes.slice();
        queueMicrotask(() => open && reader.push(copy));
        return bytes.length;
      },
      end: () => queueMicrotask(end),
    },
    { maxPendingBytes },
  );
  const peer = outboxPeer(outbox, "127.0.0.1", nextPort++, {
    terminate() {
      outbox.clear();
      queueMicrotask(end);
    },
    setFrameLimit(bytes) {
      frameLimit = bytes;
    },
  });
  conn = relay.open(peer);
  const opened = conn;
  return {
    sendFrame(body) {
      const copy = body.slice();
      // Past the frame limit the relay hears only the length, as from a transport's reader.
      queueMicrotask(() => {
        if (!open) return;
        if (copy.length > frameLimit) relay.oversized(opened, copy.length);
        else relay.receive(opened, copy);
      });
    },
    onFrame: (handler) => void handlers.push(handler),
    closed,
    close: () => queueMicrotask(end),
    drop() {
      conn = null;
      end();
    },
  };
}

async function startCore(flags: string[]): Promise<Reached> {
  const config = resolveConfig(["--host", "127.0.0.1", "--port", "any", ...flags], {});
  const watcher = logWatcher();
  const log = createLogger({ level: "debug", format: "json", write: (line) => watcher.line(line) });
  const { relay, store } = buildRelay(config, log);
  const ticker = setInterval(() => relay.tick(), TICK_MS);
  const nudger =
    config.nudgeInterval > 0 ? setInterval(() => relay.nudge(), Math.max(5, config.nudgeInterval / 4)) : null;
  const channels = new Set<MemoryChannel>();
  function connect(reading: boolean): MemoryChannel {
    const channel = openMemory(relay, config.maxPendingBytes, reading);
    channels.add(channel);
    void channel.closed.then(() => channels.delete(channel));
    return channel;
  }
  return {
    waitForEvent: watcher.waitForEvent,
    open: async () => connect(true),
    async sleeper(name): Promise<Sleeper> {
      const channel = connect(false);
      channel.sendFrame(registerBody(name));
      return { terminate: () => channel.close() };
    },
    async stop() {
      clearInterval(ticker);
      if (nudger) clearInterval(nudger);
      relay.beginShutdown();
      relay.closeAll();
      for (const c of channels) c.drop();
      store?.close();
    },
  };
}

const WHOLE_BODIES = "the core is handed whole frame bodies; framing is the transports'";

/** The socket-free core, as a runner of the contract suite. */
export function overCore(label: string): Runner {
  return {
    label,
    lacks: { "byte stream": WHOLE_BODIES, "lone header answered": WHOLE_BODIES },
    start: startCore,
  };
}
