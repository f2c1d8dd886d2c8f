/**
 * The connection table (src/transport/connections.ts) on its own: the
 * shutdown's quiet and empty checks, the close bounded in time, and memory
 * pressure relief. Its entries are real links (src/transport/edge.ts) over the
 * real relay core; only the carrier under each link is in memory, so a test
 * decides which peer reads and which does not.
 */
import { describe, expect, test } from "bun:test";
import { createRelay, type Relay } from "../../../src/core/index.ts";
import { createLogger } from "../../../src/lib/log.ts";
import { type ConnectionTable, CLOSE_LINGER_MS, createConnectionTable } from "../../../src/transport/connections.ts";
import { type Carrier, Link } from "../../../src/transport/edge.ts";
import { createGuard } from "../../../src/transport/guard.ts";
import { encodeMessage, toByteArrayWire } from "../../../src/protocol/messages.ts";
import { registerBody } from "../../support/peers.ts";
import type { LogRecord } from "../../support/relay.ts";

/** A carrier in memory: it takes bytes while `reading`, and records what the link asked of it. */
interface MemoryCarrier extends Carrier {
  reading: boolean;
  taken: number;
  paused: boolean;
  ended: boolean;
  terminated: boolean;
}

interface Setup {
  relay: Relay;
  table: ConnectionTable;
  events: LogRecord[];
  /** A link as a transport makes one; its carrier ends the link as a transport's close handler would. */
  link(name: string | null, reading?: boolean): { link: Link; carrier: MemoryCarrier };
}

function setup(maxTotalPendingBytes = 32 * 1024 * 1024): Setup {
  const events: LogRecord[] = [];
  const log = createLogger({ level: "debug", format: "json", write: (line) => events.push(JSON.parse(line)) });
  const relay = createRelay(
    {
      expectedVersion: "0.1.0",
      maxInstances: 20,
      rateLimit: 0,
      maxMessageSize: 1 << 20,
      tokens: [],
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      nudgeIntervalMs: 0,
    },
    log,
  );
  const guard = createGuard({
    allow: [],
    deny: [],
    maxConnectionsPerIp: 100,
    maxFailedRegistrations: 10,
    cooldownMs: 1000,
  });
  const table = createConnectionTable(relay, log, maxTotalPendingBytes);
  const edge = { relay, guard, table, log, maxPendingBytes: 64 * 1024 * 1024 };
  let port = 1000;
  return {
    relay,
    table,
    events,
    link(name, reading = true) {
      let link!: Link;
      const carrier: MemoryCarrier = {
        reading,
        taken: 0,
        paused: false,
        ended: false,
        terminated: false,
        write(bytes) {
          if (carrier.terminated || carrier.ended) return -1;
          if (!carrier.reading) return 0;
          carrier.taken += bytes.length;
          return bytes.length;
        },
        end() {
          carrier.ended = true;
          link.gone("closed");
        },
        terminate() {
          carrier.terminated = true;
          link.gone("closed");
        },
        pause() {
          carrier.paused = true;
        },
        resume() {
          carrier.paused = false;
        },
      };
      guard.admit("10.0.0.1", Date.now());
      link = new Link(edge, carrier, "10.0.0.1", port++);
      link.open();
      if (name !== null) link.message(registerBody(name));
      return { link, carrier };
    },
  };
}

/** The outboxes write on the next turn of the event loop. */
const flushed = () => new Promise<void>((resolve) => setImmediate(resolve));

function update(from: Link, bytes: number): void {
  from.message(
    encodeMessage({
      type: "StateUpdate",
      source_instance_id: from.conn.instance!.id,
      timestamp: 1n,
      update_data: toByteArrayWire(new Uint8Array(bytes).fill(1)),
    }),
  );
}

describe("the shutdown's checks", () => {
  test("quiet: waits for every outbox to empty, is told when one does, and stops waiting on null", async () => {
    const { table, link } = setup();
    const reader = link("reader");
    const lagger = link("lagger", false);
    await flushed();
    let quiet = 0;
    table.whenQuiet(() => quiet++);
    expect(quiet).toBe(0); // the lagger has not taken its registration response
    lagger.carrier.reading = true;
    lagger.link.drained();
    expect(quiet).toBe(1);
    table.whenQuiet(null);
    reader.link.send(new Uint8Array(8));
    await flushed();
    expect(quiet).toBe(1);
    // Already quiet: at once.
    table.whenQuiet(() => quiet++);
    expect(quiet).toBe(2);
  });

  test("empty: runs once the last connection is gone; terminateAll ends every one", () => {
    const { table, link, relay } = setup();
    const a = link("a");
    const b = link(null);
    expect(table.size).toBe(2);
    let empty = 0;
    table.whenEmpty(() => empty++);
    a.link.gone("closed");
    expect(empty).toBe(0);
    table.terminateAll();
    expect(b.carrier.terminated).toBe(true);
    expect(empty).toBe(1);
    expect(table.size).toBe(0);
    expect(relay.connections.size).toBe(0);
  });
});

describe("the bounded close", () => {
  test("a close the relay decided that the peer does not take is forced at CLOSE_LINGER_MS, and logged", async () => {
    const { table, link, events } = setup();
    const stuck = link("stuck", false);
    const quick = link("quick", false);
    const before = Date.now();
    stuck.link.close();
    quick.link.close();
    expect(stuck.link.closeBy).toBeGreaterThanOrEqual(before + CLOSE_LINGER_MS);
    quick.carrier.reading = true;
    quick.link.drained(); // takes its last bytes, and the transport reports it closed
    expect(quick.carrier.ended).toBe(true);
    table.sweep(stuck.link.closeBy - 1);
    expect(stuck.carrier.terminated).toBe(false);
    table.sweep(stuck.link.closeBy);
    expect(stuck.carrier.terminated).toBe(true);
    expect(quick.carrier.terminated).toBe(false);
    expect(events.filter((e) => e.event === "close_forced").map((e) => e.ip)).toEqual(["10.0.0.1"]);
    // Reading is not resumed on a connection being closed.
    stuck.link.resumeReading();
    expect(stuck.carrier.paused).toBe(true);
    expect(table.size).toBe(0);
  });
});

describe("memory pressure", () => {
  test(`past the bound: the sender of the lagging session is paused at once, the peers that took nothing \
for a second are cut (largest first) until under half, and the sender resumes`, async () => {
    const { table, link, relay, events } = setup(1024 * 1024);
    const sender = link("sender");
    const far = link("far-behind");
    const near = link("near-behind", false);
    await flushed();
    far.carrier.reading = false; // took its registration response, then stopped
    for (let i = 0; i < 7; i++) update(sender.link, 100_000);
    await flushed();
    near.carrier.reading = true;
    near.link.drained(); // kept up until here
    near.carrier.reading = false;
    for (let i = 0; i < 3; i++) update(sender.link, 100_000);
    await flushed();
    expect(table.budget.over).toBe(true);
    // At once: nobody has been stalled for a second yet, so the sender is slowed down instead.
    expect(sender.carrier.paused).toBe(true);
    expect(relay.stats.disconnects.memory_pressure).toBe(0);
    expect(events.find((e) => e.event === "backpressure")).toMatchObject({ reason: "total_pending", cut: 0 });

    table.sweep(Date.now() + 1500);
    // Cutting the one furthest behind brought the unsent data under half the bound: the other stays.
    expect(relay.stats.disconnects.memory_pressure).toBe(1);
    expect(far.link.conn.state).toBe("closed");
    expect(near.link.conn.state).toBe("registered");
    expect(table.budget.used).toBeLessThanOrEqual(table.budget.limit / 2);
    expect(table.budget.over).toBe(false);
    expect(sender.carrier.paused).toBe(false);
  });
});
