/**
 * Nothing a stranger sends takes the relay down or stalls a session (issue 12):
 * each finding, tried over real sockets as a hostile client would.
 */
import { describe, expect, test } from "bun:test";
import { encodeMessage } from "../../src/protocol/messages.ts";
import { connectSleeper, cleanupAfterEach, registerFrame } from "../support/peers.ts";
import { connectRaw, header } from "../support/raw.ts";
import { ClientPool, startInProcess } from "../support/relay.ts";

const keep = cleanupAfterEach();

describe("before registration", () => {
  test("a flood of empty frames gets one Error, then the connection is closed", async () => {
    const relay = keep(await startInProcess());
    const raw = await connectRaw(relay.port);
    raw.write(new Uint8Array(4 * 10_000));
    await raw.closed;
    expect(raw.frames).toEqual([{ type: "Error", message: "Invalid message: empty frame" }]);
  });

  test(`a frame over the handshake cap (a partial 1 MiB frame, or 1 MiB of capabilities) is refused with \
the cap, then closed`, async () => {
    const relay = keep(await startInProcess());
    const partial = await connectRaw(relay.port);
    partial.write(header(1 << 20));
    partial.write(new Uint8Array(1000));
    await partial.closed;
    expect(partial.frames).toEqual([{ type: "Error", message: "Message too large: 1048576 bytes (max: 4096)" }]);
    const caps = await connectRaw(relay.port);
    caps.write(registerFrame("caps", { capabilities: Array.from({ length: 2000 }, () => "x".repeat(500)) }));
    await caps.closed;
    expect(caps.frames.length).toBe(1);
    expect(caps.frames[0]).toMatchObject({
      type: "Error",
      message: expect.stringMatching(/^Message too large: \d+ bytes \(max: 4096\)$/),
    });
  });

  test(`past the per-address cap on handshaking connections the next one is closed at once; \
registering frees a slot`, async () => {
    const relay = keep(await startInProcess(["--max-handshakes-per-ip", "3"]));
    const lurkers = await Promise.all([1, 2, 3].map(() => connectRaw(relay.port)));
    const fourth = await connectRaw(relay.port);
    await fourth.closed;
    expect(fourth.frames).toEqual([]);
    await relay.waitForEvent("connection_refused", { reason: "handshake_limit" });
    lurkers[0]!.write(registerFrame("now-registered"));
    expect((await lurkers[0]!.next()).type).toBe("RegistrationResponse");
    const fifth = await connectRaw(relay.port);
    fifth.write(registerFrame("fifth"));
    expect((await fifth.next()).type).toBe("RegistrationResponse");
    for (const l of lurkers) l.socket.end();
    fifth.socket.end();
  });

  test(`a close the relay decides is over within a bound even if the peer never reads nor closes; \
its address slot is freed`, async () => {
    const relay = keep(await startInProcess(["--max-pending-bytes", "65536", "--max-connections-per-ip", "2"]));
    const pool = new ClientPool(() => relay.port);
    try {
      const sender = await pool.register("sender", { capabilities: ["presence"] });
      const sleeper = await connectSleeper(relay.port);
      await sender.next("InstanceConnected");
      // The sleeper is cut with bytes still queued that it will never take: the close
      // must not wait for them.
      for (let i = 0; relay.server!.relay.stats.disconnects.slow_consumer === 0; i++) {
        sender.sendUpdate(new Uint8Array(60_000), BigInt(i));
        await sender.ping(BigInt(i));
      }
      await relay.waitForEvent("close_forced", {}, 10_000);
      const next = await connectRaw(relay.port);
      next.write(registerFrame("after"));
      expect((await next.next()).type).toBe("RegistrationResponse");
      next.socket.end();
      sleeper.terminate();
    } finally {
      pool.closeAll();
    }
  }, 15_000);
});

describe("registered instances", () => {
  test("unknown capabilities are dropped and only a few short ones are looked at", async () => {
    const relay = keep(await startInProcess());
    const raw = await connectRaw(relay.port);
    raw.write(registerFrame("caps", { capabilities: ["presence", ...Array.from({ length: 30 }, (_, i) => `x${i}`)] }));
    expect((await raw.next()).type).toBe("RegistrationResponse");
    const inst = [...relay.server!.relay.sessions.values()][0]!.instances[0]!;
    expect([...inst.capabilities]).toEqual(["presence"]);
    raw.socket.end();
  });

  test("register/leave churn from one address is bounded", async () => {
    const relay = keep(await startInProcess(["--max-registrations-per-ip", "3"]));
    for (let i = 0; i < 3; i++) {
      const c = await connectRaw(relay.port);
      c.write(registerFrame(`churn${i}`));
      expect((await c.next()).type).toBe("RegistrationResponse");
      c.socket.end();
      await c.closed;
    }
    const refused = await connectRaw(relay.port);
    refused.write(registerFrame("churn-again"));
    expect(await refused.next()).toEqual({
      type: "Error",
      message: "Too many registrations from this address; try again in a minute",
    });
    await refused.closed;
  });

  test(`late joiners that do not take their history are cut after the replay timeout; \
live relaying goes on meanwhile`, async () => {
    const relay = keep(await startInProcess(["--history", "1000", "--replay-timeout", "1"]));
    const pool = new ClientPool(() => relay.port);
    try {
      const sender = await pool.register("sender");
      const receiver = await pool.register("receiver");
      const edit = new Uint8Array(16_000).fill(3);
      for (let i = 0; i < 300; i++) sender.sendUpdate(edit, BigInt(i));
      expect((await receiver.next("StateBroadcast", { where: (m) => m.timestamp === 299n })).timestamp).toBe(299n);
      const sleepers = await Promise.all([1, 2, 3].map((i) => connectSleeper(relay.port, `late${i}`)));
      await relay.waitForEvent("registered", { instance: "late3" });
      // Live updates keep flowing to the receiver while the three sit on 4.8 MB of history.
      for (let i = 1000; i < 1020; i++) {
        sender.sendUpdate(Uint8Array.of(1), BigInt(i));
        expect((await receiver.next("StateBroadcast", { where: (m) => m.timestamp === BigInt(i) })).timestamp).toBe(
          BigInt(i),
        );
      }
      for (let i = 1; i <= 3; i++)
        await receiver.next("InstanceDisconnected", {
          where: (m) => m.instance_name === `late${i}`,
          timeoutMs: 10_000,
        });
      expect(relay.server!.relay.stats.disconnects.replay_timeout).toBe(3);
      for (const s of sleepers) s.terminate();
    } finally {
      pool.closeAll();
    }
  }, 15_000);

  test(`under relay-wide memory pressure the connections holding the most are cut; \
the others keep playing`, async () => {
    const relay = keep(
      await startInProcess(["--max-total-pending-bytes", "4194304", "--max-pending-bytes", "16777216"]),
    );
    const pool = new ClientPool(() => relay.port);
    try {
      const sender = await pool.register("sender");
      const receiver = await pool.register("receiver");
      const sleepers = await Promise.all([1, 2].map((i) => connectSleeper(relay.port, `sleepy${i}`)));
      await receiver.next("StateBroadcast", { timeoutMs: 1 }).catch(() => undefined);
      const edit = new Uint8Array(200_000).fill(9);
      let i = 0;
      while (relay.server!.relay.stats.disconnects.memory_pressure < 2 && i < 400) {
        sender.sendUpdate(edit, BigInt(i));
        expect((await receiver.next("StateBroadcast", { where: (m) => m.timestamp === BigInt(i) })).timestamp).toBe(
          BigInt(i),
        );
        i++;
      }
      expect(relay.server!.relay.stats.disconnects.memory_pressure).toBe(2);
      // The receiver heard about both, and goes on receiving.
      await receiver.next("InstanceDisconnected", { where: (m) => m.instance_name === "sleepy1" });
      await receiver.next("InstanceDisconnected", { where: (m) => m.instance_name === "sleepy2" });
      sender.sendUpdate(Uint8Array.of(1), 99_999n);
      expect((await receiver.next("StateBroadcast", { where: (m) => m.timestamp === 99_999n })).timestamp).toBe(
        99_999n,
      );
      for (const s of sleepers) s.terminate();
    } finally {
      pool.closeAll();
    }
  });
});

describe("logs under floods", () => {
  test("repeated connects from one address: one line now, the rest as one count when the minute ends", async () => {
    const relay = keep(await startInProcess(["--log-format", "json"]));
    const count = 100;
    for (let i = 0; i < count; i++) {
      const c = await connectRaw(relay.port);
      c.write(encodeMessage({ type: "Ping", timestamp: 1n }).length > 0 ? new Uint8Array(4) : new Uint8Array(0));
      await c.closed;
    }
    const accepted = () =>
      relay.logs
        .filter((l) => l.includes('"event":"connection_accepted"'))
        .map((l) => JSON.parse(l) as { count?: number });
    expect(accepted().length).toBe(1);
    relay.server!.relay.tick(Date.now() + 61_000);
    const lines = accepted();
    expect(lines.length).toBe(2);
    expect(1 + (lines[1]!.count ?? 0)).toBe(count);
  });
});
