/**
 * Floods stay quiet and visible, and slow links still get their history (issue 27,
 * findings 6, 8 and 10): idle HTTP connections using every file descriptor of a
 * relay run with a small `ulimit -n`, register/leave churn from many addresses
 * each within its own budget, and a late joiner reading its history slowly.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import { decodeMessage, encodeMessage } from "../../src/protocol/messages.ts";
import { createFrameReader, frameOf } from "../../src/protocol/framing.ts";
import { connectFrom } from "../support/from.ts";
import { cleanupAfterEach, registerFrame } from "../support/peers.ts";
import { ROOT } from "../support/paths.ts";
import { ClientPool, startInProcess, startProcess } from "../support/relay.ts";

const keep = cleanupAfterEach();

describe("6: file descriptors", () => {
  test(`idle HTTP connections using every descriptor: one line with the count, in /metrics; \
players join again once they are gone`, async () => {
    const limited = ["sh", "-c", 'ulimit -n 192 && exec "$0" "$@"', process.execPath, join(ROOT, "src", "main.ts")];
    const relay = keep(await startProcess(limited)(["--http-port", "any"]));
    const idle: net.Socket[] = [];
    try {
      for (let i = 0; i < 260; i++) {
        const s = net.connect({ host: "127.0.0.1", port: relay.httpPort! });
        s.on("error", () => {});
        idle.push(s);
      }
      const line = await relay.waitForEvent("accept_failed", undefined, 10_000);
      expect(line.limit).toBe(192);
      expect(line.waiting as number).toBeGreaterThan(0);
      expect(line.msg).toContain("No file descriptor left");
    } finally {
      for (const s of idle) s.destroy();
    }
    const player = keep(await connect({ port: relay.port, connectTimeoutMs: 10_000 }));
    expect((await player.register({ name: "after-the-flood" })).success).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^sova_relay_accept_failing_seconds_total [1-9]\d*$/m);
    expect(metrics).toContain("sova_relay_descriptors_limit 192");
    expect(relay.events.filter((e) => e.event === "accept_failed").length).toBe(1);
  }, 30_000);

  test("the packaging leaves descriptors for players, and the proxy examples limit connections", () => {
    const unit = readFileSync(join(ROOT, "packaging", "sova-relay.service"), "utf8");
    const limit = Number(/^LimitNOFILE=(\d+)$/m.exec(unit)?.[1]);
    expect(limit).toBeGreaterThanOrEqual(65536);
    // A nofile above the engine's own hard limit stops the container from starting; the
    // relay takes the hard limit it is given instead (the next test).
    for (const file of ["docker-compose.yml", "docker-compose.cluster.yml"])
      expect(readFileSync(join(ROOT, file), "utf8")).not.toMatch(/^\s+ulimits:/m);
    const compose = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
    expect(compose).toContain("traefik.http.routers.sova-ws.middlewares: sova-per-ip,sova-total");
    expect(compose).toContain("traefik.tcp.routers.sova-tls.middlewares: sova-tcp-per-ip");
    // The proxy examples, wherever the docs keep them.
    const docs = [join(ROOT, "README.md"), ...docFiles()].map((f) => readFileSync(f, "utf8")).join("\n");
    expect(/limit_conn sova_per_ip \d+;/.test(docs)).toBe(true);
    expect(/max_conns_per_host \d+/.test(docs)).toBe(true);
  });

  test("a relay started with a low soft limit takes the hard one (as in a container with the engine's defaults)", async () => {
    const limited = [
      "sh",
      "-c",
      'ulimit -Sn 256 && ulimit -Hn 4096 && exec "$0" "$@"',
      process.execPath,
      join(ROOT, "src", "main.ts"),
    ];
    const relay = keep(await startProcess(limited)(["--http-port", "any"]));
    const metrics = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
    expect(metrics).toContain("sova_relay_descriptors_limit 4096");
  });
});

function docFiles(): string[] {
  const dir = join(ROOT, "docs");
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith(".md"))
        .map((f) => join(dir, f))
    : [];
}

describe("10: register/leave churn from many addresses", () => {
  test(`30 addresses churning within their budgets: a member hears a bounded number of notices, \
and registration lines are aggregated with totals that add up`, async () => {
    const relay = keep(await startInProcess(["--log-format", "json"]));
    const pool = new ClientPool(() => relay.port);
    try {
      const member = await pool.register("member");
      const watcher = await pool.register("watcher", { capabilities: ["presence"] });
      const cycles = 30 * 30;
      await Promise.all(
        Array.from({ length: 30 }, async (_, a) => {
          for (let i = 0; i < 30; i++) {
            const p = await connectFrom(relay.port, `127.0.4.${a + 1}`);
            p.socket.write(registerFrame(`churn-${a}-${i}`));
            expect((await p.next()).type).toBe("RegistrationResponse");
            p.socket.destroy();
            await p.closed;
          }
        }),
      );
      // A round trip through each: whatever notice was sent before it has arrived.
      await member.ping(1n);
      await watcher.ping(1n);
      const told = (c: typeof member, type: string) => c.unread.filter((m) => m.type === type).length;
      expect(told(member, "InstanceDisconnected")).toBeLessThan(200);
      expect(told(watcher, "InstanceConnected")).toBeLessThan(200);
      // Every join the watcher was told of, it is told the end of.
      expect(told(watcher, "InstanceDisconnected")).toBeGreaterThanOrEqual(told(watcher, "InstanceConnected"));
      expect(told(watcher, "InstanceDisconnected")).toBeLessThan(200);
      await relay.waitForEvent("notices_limited");
      expect(relay.server!.relay.stats.noticesSuppressed).toBeGreaterThan(cycles);
      const lines = (event: string) => relay.events.filter((e) => e.event === event);
      expect(lines("registered").length).toBeLessThan(400);
      // The counted rest comes as one line per address when its minute ends.
      relay.server!.relay.tick(Date.now() + 61_000);
      for (const event of ["registered", "disconnected"]) {
        const total = lines(event).reduce((n, e) => n + (e.aggregated ? (e.count as number) : 1), 0);
        expect(total).toBe(cycles + (event === "registered" ? 2 : 0));
      }
    } finally {
      pool.closeAll();
    }
  }, 60_000);
});

describe("8: a late joiner on a slow link", () => {
  test("a newcomer taking its history slowly, for several times --replay-timeout, gets all of it", async () => {
    const source = [process.execPath, join(ROOT, "src", "main.ts")];
    const relay = keep(await startProcess(source)(["--history", "2000", "--rate-limit", "0", "--replay-timeout", "1"]));
    const sender = keep(await connect({ port: relay.port }));
    await sender.register({ name: "sender" });
    const edit = new Uint8Array(16_000).fill(4);
    const edits = 1000;
    for (let i = 0; i < edits; i++) sender.sendUpdate(edit, BigInt(i));
    await sender.ping(1n);
    const got = await slowJoiner(relay.port, 4 * 1024 * 1024);
    expect(got.history).toBe(edits);
    expect(got.elapsedMs).toBeGreaterThan(2000);
    // A newcomer that stops reading is cut as before (tests/adversarial/hostile.test.ts).
    await relay.stop();
    expect(relay.events.some((e) => e.event === "slow_consumer")).toBe(false);
  }, 40_000);
});

/** Registers and reads at about `bytesPerSecond` until the history has come (the Pong sent after it). */
async function slowJoiner(port: number, bytesPerSecond: number): Promise<{ history: number; elapsedMs: number }> {
  const done = Promise.withResolvers<{ history: number; elapsedMs: number }>();
  const t0 = performance.now();
  let history = 0;
  let read = 0;
  const reader = createFrameReader(0xffffffff, {
    frame(body) {
      const m = decodeMessage(body);
      if (m.type === "StateBroadcast") history++;
      else if (m.type === "Error") done.reject(new Error(`cut: ${m.message} after ${history} updates`));
      else if (m.type === "Pong" && m.timestamp === 7n) done.resolve({ history, elapsedMs: performance.now() - t0 });
    },
    oversized() {},
  });
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(s, chunk) {
        read += chunk.length;
        reader.push(chunk);
        // Ahead of what the link carries by now: stop reading until it has caught up.
        const early = read / bytesPerSecond - (performance.now() - t0) / 1000;
        if (early > 0) {
          s.pause();
          setTimeout(() => s.resume(), early * 1000);
        }
      },
      close: () => done.reject(new Error(`closed after ${history} updates`)),
      error: (_s, e) => done.reject(e),
    },
  });
  socket.write(registerFrame("slow"));
  socket.write(frameOf(encodeMessage({ type: "Ping", timestamp: 7n })));
  try {
    return await done.promise;
  } finally {
    socket.end();
  }
}
