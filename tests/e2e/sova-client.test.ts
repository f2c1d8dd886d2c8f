/**
 * What the relay does for the Sova client people run today (README, "Sova client
 * compatibility"), shown with a double that has that client's habits.
 */
import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/peers.ts";
import { startInProcess, startProcess } from "../support/relay.ts";
import { connectSovaDouble } from "../support/sova-double.ts";

const keep = cleanupAfterEach();
const isUpdate =
  (from: string, t: bigint) => (m: { type: string; source_instance_name?: string; timestamp?: bigint }) =>
    m.type === "StateBroadcast" && m.source_instance_name === from && m.timestamp === t;

describe("today's Sova client", () => {
  test("two quiet instances both edit: the nudges let both edits out", async () => {
    const relay = keep(await startInProcess(["--nudge-interval", "40"]));
    const a = await connectSovaDouble(relay.port, "a");
    const b = await connectSovaDouble(relay.port, "b");
    // Both handler tasks sit in recv() holding the lock; nothing else flows. Without a
    // nudge each edit would wait for a frame that only the other's edit could cause.
    await Promise.all([a.edit(Uint8Array.of(1), 1n), b.edit(Uint8Array.of(2), 2n)]);
    await Promise.all([b.handledWhere(isUpdate("a", 1n)), a.handledWhere(isUpdate("b", 2n))]);
    expect(relay.server!.relay.stats.nudges).toBeGreaterThan(0);
    a.close();
    b.close();
  });

  test("after SIGTERM the client marks itself disconnected", async () => {
    const relay = await startProcess(["bun", "src/main.ts"])([]);
    const a = await connectSovaDouble(relay.port, "a");
    expect(a.isConnected).toBe(true);
    relay.process!.kill("SIGTERM");
    await a.disconnected;
    expect(a.isConnected).toBe(false);
    await relay.process!.exited;
  });

  test("after a slow-consumer cut the client marks itself disconnected", async () => {
    const relay = keep(await startInProcess(["--max-pending-bytes", "1048576"]));
    const slow = await connectSovaDouble(relay.port, "slow");
    const sender = await connectSovaDouble(relay.port, "sender");
    slow.stall();
    const payload = new Uint8Array(200_000).fill(7);
    let t = 0n;
    const cut = relay.waitForEvent("slow_consumer", { instance: "slow" }, 15_000);
    let done = false;
    void cut.then(() => (done = true));
    while (!done) await sender.edit(payload, t++);
    slow.resume();
    await slow.disconnected;
    expect(slow.isConnected).toBe(false);
    expect(relay.server!.relay.stats.lastWords).toBeGreaterThanOrEqual(1);
    sender.close();
  });
});
