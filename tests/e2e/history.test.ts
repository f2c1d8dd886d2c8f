/**
 * Late joiners catch up: session history replayed as ordinary StateBroadcast
 * frames, bounded, persisted in SQLite across restarts, cleared from the CLI.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type RelayClient } from "../../src/client/client.ts";
import { broadcastPrefix, encodeBroadcastFrame, toByteArrayWire, type Message } from "../../src/protocol/messages.ts";
import { createHistory } from "../../src/core/history.ts";
import { cleanupAfterEach } from "../support/peers.ts";
import { startInProcess, startProcess } from "../support/relay.ts";
import { ROOT } from "../support/paths.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];

const keep = cleanupAfterEach();

/** Sender index and sequence number, as the tests write them in the payload. */
const tag = (sender: number, seq: number) => Uint8Array.of(sender, seq >> 8, seq & 0xff);
const key = (m: Extract<Message, { type: "StateBroadcast" }>) => `${m.source_instance_name}:${m.timestamp}`;

describe("history ring", () => {
  const frame = (n: number, size = 10) =>
    encodeBroadcastFrame(broadcastPrefix("a"), BigInt(n), toByteArrayWire(new Uint8Array(size)));

  test("bounded by count, keeping the newest, oldest first", () => {
    const h = createHistory({ maxEntries: 3, maxBytes: 1e9, maxAgeMs: 0 });
    for (let i = 0; i < 10; i++) h.append("s", frame(i), 0);
    expect(h.replay("s", 0)).toEqual([frame(7), frame(8), frame(9)]);
  });

  test("bounded by bytes", () => {
    const f = frame(0, 100);
    const h = createHistory({ maxEntries: 1000, maxBytes: f.length * 4, maxAgeMs: 0 });
    for (let i = 0; i < 10; i++) h.append("s", frame(i, 100), 0);
    expect(h.replay("s", 0).length).toBe(4);
    expect(h.sizes().get("s")).toEqual({ entries: 4, bytes: f.length * 4 });
  });

  test("bounded by age, checked again at replay time", () => {
    const h = createHistory({ maxEntries: 1000, maxBytes: 1e9, maxAgeMs: 1000 });
    h.append("s", frame(1), 0);
    h.append("s", frame(2), 500);
    h.append("s", frame(3), 1400);
    expect(h.replay("s", 1400)).toEqual([frame(2), frame(3)]);
    expect(h.replay("s", 2450)).toEqual([]);
  });

  test("sessions are separate; off means nothing is kept", () => {
    const h = createHistory({ maxEntries: 5, maxBytes: 1e9, maxAgeMs: 0 });
    h.append("a", frame(1), 0);
    h.append("b", frame(2), 0);
    expect(h.replay("a", 0)).toEqual([frame(1)]);
    const off = createHistory({ maxEntries: 0, maxBytes: 1e9, maxAgeMs: 0 });
    off.append("a", frame(1), 0);
    expect(off.replay("a", 0)).toEqual([]);
  });
});

describe("late joiners", () => {
  test(`join after 500 updates with --history 100: \
exactly the last 100, then live, no gap or duplicate while 3 others keep sending`, async () => {
    const relay = keep(await startInProcess(["--history", "100", "--rate-limit", "0"]));
    const observer = keep(await connect({ port: relay.port }));
    await observer.register({ name: "observer", capabilities: ["presence"] });
    // Everything the observer sees, in the relay's order, with the newcomer's arrival marked.
    const seen: string[] = [];
    let joinedAt = -1;
    observer.onMessage((m) => {
      if (m.type === "StateBroadcast") seen.push(key(m));
      if (m.type === "InstanceConnected" && m.instance_name === "late") joinedAt = seen.length;
    });
    const first = keep(await connect({ port: relay.port }));
    await first.register({ name: "first" });
    for (let i = 0; i < 500; i++) first.sendUpdate(tag(0, i), BigInt(i));
    const busy: RelayClient[] = [];
    for (let s = 1; s <= 3; s++) {
      const c = keep(await connect({ port: relay.port }));
      await c.register({ name: `busy${s}` });
      busy.push(c);
    }
    await observer.next("StateBroadcast", {
      where: (m) => m.source_instance_name === "first" && m.timestamp === 499n,
      timeoutMs: 10000,
    });
    let sending = true;
    let sent = 0;
    const pump = (async () => {
      while (sending) {
        for (const [s, c] of busy.entries()) c.sendUpdate(tag(s + 1, sent), BigInt(10_000 + sent));
        sent++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const late = keep(await connect({ port: relay.port }));
    const got: string[] = [];
    late.onMessage((m) => {
      if (m.type === "StateBroadcast") got.push(key(m));
    });
    await late.register({ name: "late" });
    await observer.next("InstanceConnected", { where: (m) => m.instance_name === "late" });
    await new Promise((r) => setImmediate(r)); // let a few more live updates cross the join
    sending = false;
    await pump;
    // The last update each busy sender sent has reached both.
    for (const [s] of busy.entries()) {
      await observer.next("StateBroadcast", {
        where: (m) => m.source_instance_name === `busy${s + 1}` && m.timestamp === BigInt(10_000 + sent - 1),
        timeoutMs: 10000,
      });
      await late.next("StateBroadcast", {
        where: (m) => m.source_instance_name === `busy${s + 1}` && m.timestamp === BigInt(10_000 + sent - 1),
        timeoutMs: 10000,
      });
    }
    expect(joinedAt).toBeGreaterThanOrEqual(500);
    // History: exactly the 100 relayed before the join; then every later update once, in order.
    expect(got.slice(0, 100)).toEqual(seen.slice(joinedAt - 100, joinedAt));
    expect(got).toEqual(seen.slice(joinedAt - 100));
    expect(new Set(got).size).toBe(got.length);
    expect(late.decodeErrors).toEqual([]);
  }, 30000);

  test("history survives a restart with --state-dir; source names and timestamps intact", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-state-"));
    const flags = ["--history", "100", "--state-dir", dir];
    const before = await startProcess(SOURCE)(flags);
    const sender = await connect({ port: before.port });
    await sender.register({ name: "café-東京" });
    const witness = await connect({ port: before.port });
    await witness.register({ name: "witness" });
    for (let i = 0; i < 500; i++) sender.sendUpdate(tag(0, i), 1705314615000n + BigInt(i));
    await witness.next("StateBroadcast", { where: (m) => m.timestamp === 1705314615499n, timeoutMs: 10000 });
    sender.close();
    witness.close();
    await before.stop();

    const after = keep(await startProcess(SOURCE)(flags));
    await after.waitForEvent("history_loaded", { entries: 100 });
    const late = keep(await connect({ port: after.port }));
    const got: Array<Extract<Message, { type: "StateBroadcast" }>> = [];
    late.onMessage((m) => {
      if (m.type === "StateBroadcast") got.push(m);
    });
    await late.register({ name: "late" });
    await late.ping(1n);
    expect(got.length).toBe(100);
    expect(got.map((m) => m.timestamp)).toEqual(Array.from({ length: 100 }, (_, i) => 1705314615400n + BigInt(i)));
    expect(new Set(got.map((m) => m.source_instance_name))).toEqual(new Set(["café-東京"]));
  }, 30000);

  test("a corrupt database: one clear line, exit 2; --state-reset starts afresh", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-state-"));
    writeFileSync(join(dir, "history.sqlite"), "this is not a database, it is a concert programme".repeat(100));
    const r = Bun.spawnSync([...SOURCE, "--port", "0", "--http-port", "0", "--history", "10", "--state-dir", dir], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(2);
    const lines = r.stderr.toString().trim().split("\n");
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(
      /the history database '.*history\.sqlite' is damaged \(.*\); fix or move it, or start with --state-reset/,
    );
    const reset = keep(await startProcess(SOURCE)(["--history", "10", "--state-dir", dir, "--state-reset"]));
    await reset.waitForEvent("history_loaded", { entries: 0 });
  });

  test("history clear: all, or one session by its hash", async () => {
    const ONE = "one-history-token-Q7";
    const dir = mkdtempSync(join(tmpdir(), "sova-state-"));
    const relay = await startProcess(SOURCE)([
      "--history",
      "50",
      "--state-dir",
      dir,
      "--token",
      ONE,
      "--token",
      "two-history-token-R4",
    ]);
    for (const token of [ONE, "two-history-token-R4"]) {
      const a = await connect({ port: relay.port });
      await a.register({ name: "a", token });
      for (let i = 0; i < 5; i++) a.sendUpdate(tag(0, i), BigInt(i));
      await a.ping(1n);
      a.close();
    }
    await relay.stop();
    const { sessionHash } = await import("../../src/core/access.ts");
    const { loadSessionSecret } = await import("../../src/storage/session-key.ts");
    const id = sessionHash(ONE, loadSessionSecret(dir));
    const one = Bun.spawnSync([...SOURCE, "history", "clear", "--state-dir", dir, "--session", id], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(one.exitCode).toBe(0);
    expect(one.stdout.toString()).toContain(`removed 5 stored updates of session ${id}`);
    const all = Bun.spawnSync([...SOURCE, "history", "clear", "--state-dir", dir], { stdout: "pipe", stderr: "pipe" });
    expect(all.stdout.toString()).toContain("removed 5 stored updates");
    const bad = Bun.spawnSync([...SOURCE, "history", "clear", "--state-dir", dir, "--session", "one"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).not.toContain("one\n"); // a token-looking value is not echoed back as a session
    // A relay and four commands, each a process start: seconds on a busy machine.
  }, 30_000);
});

/** A path's permission bits. */
const mode = (path: string) => statSync(path).mode & 0o777;

function cli(args: string[]) {
  const p = Bun.spawnSync([...SOURCE, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("the state directory: private to the relay's user, never made by a command that only reads", () => {
  test("history export makes nothing: no directory, no database; one line, exit 2", () => {
    const parent = mkdtempSync(join(tmpdir(), "sova-state-"));
    const missing = join(parent, "typo", "state");
    expect(cli(["history", "export", "--state-dir", missing])).toMatchObject({
      code: 2,
      err: `sova-relay: --state-dir '${missing}' does not exist\n`,
    });
    expect(existsSync(join(parent, "typo"))).toBe(false);
    // A directory without a database (the relay ran without --history, or this is not its directory).
    expect(cli(["history", "export", "--state-dir", parent, "--out", join(parent, "out.jsonl")])).toMatchObject({
      code: 2,
      err:
        `sova-relay: no session history in ${parent}` +
        " (no history.sqlite: the relay keeps one with --state-dir and --history)\n",
    });
    expect(readdirSync(parent)).toEqual([]);
    const file = join(parent, "a-file");
    writeFileSync(file, "");
    expect(cli(["history", "export", "--state-dir", file]).err).toBe(
      `sova-relay: --state-dir '${file}' is not a directory\n`,
    );
  });

  test("history clear with a mistyped --state-dir makes nothing and does not say it cleared: one line, exit 2", () => {
    const parent = mkdtempSync(join(tmpdir(), "sova-state-"));
    const missing = join(parent, "typo");
    expect(cli(["history", "clear", "--state-dir", missing])).toMatchObject({
      code: 2,
      out: "",
      err: `sova-relay: --state-dir '${missing}' does not exist\n`,
    });
    expect(cli(["history", "clear", "--state-dir", parent]).code).toBe(2);
    expect(readdirSync(parent)).toEqual([]);
  });

  test("made by the relay: the directory 0700, history.sqlite and its -wal and -shm 0600, like session-key", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "sova-state-")), "new");
    // Open from the start: the relay writes to the database once at start-up (which makes the -wal and -shm).
    keep(await startProcess(SOURCE)(["--history", "10", "--state-dir", dir]));
    const files = ["history.sqlite", "history.sqlite-wal", "history.sqlite-shm", "session-key"];
    const modes: Record<string, number> = { dir: mode(dir) };
    for (const f of files) modes[f] = mode(join(dir, f));
    expect(modes).toEqual({
      dir: 0o700,
      "history.sqlite": 0o600,
      "history.sqlite-wal": 0o600,
      "history.sqlite-shm": 0o600,
      "session-key": 0o600,
    });
  });

  test("made by a command first: the same modes; a database an older relay made 0644 is made 0600", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "sova-state-")), "new");
    expect(cli(["watch", "enable", "--state-dir", dir, "--session", "open"]).code).toBe(0);
    expect(mode(dir)).toBe(0o700);
    await (await startProcess(SOURCE)(["--history", "10", "--state-dir", dir])).stop();
    chmodSync(join(dir, "history.sqlite"), 0o644);
    expect(cli(["history", "clear", "--state-dir", dir]).code).toBe(0);
    expect(mode(join(dir, "history.sqlite"))).toBe(0o600);
  });

  test("history export --out writes the recording 0600, a file that was there too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-state-"));
    const relay = await startProcess(SOURCE)(["--history", "10", "--state-dir", dir]);
    const a = await connect({ port: relay.port });
    await a.register({ name: "a" });
    a.sendUpdate(tag(0, 1));
    await a.ping(1n);
    a.close();
    await relay.stop();
    const fresh = join(dir, "fresh.jsonl");
    expect(cli(["history", "export", "--state-dir", dir, "--out", fresh]).code).toBe(0);
    const old = join(dir, "old.jsonl");
    writeFileSync(old, "an earlier export\n", { mode: 0o644 });
    chmodSync(old, 0o644);
    expect(cli(["history", "export", "--state-dir", dir, "--out", old]).code).toBe(0);
    expect([mode(fresh), mode(old)]).toEqual([0o600, 0o600]);
  });
});
