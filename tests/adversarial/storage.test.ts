/**
 * Storage failures never stop relaying, and start-up names the real cause
 * (issue 27, findings 2 and 11): a state directory on a full disk (a tmpfs of
 * 1 MiB), on a read-only mount, and a history file the relay's user cannot
 * write, with the relay run as its own process. Mounting needs root: without
 * it the file is skipped with one line.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type RelayClient } from "../../src/client/client.ts";
import { ROOT } from "../support/paths.ts";
import { startProcess, type RelayHandle } from "../support/relay.ts";

const SOURCE = [process.execPath, join(ROOT, "src", "main.ts")];
const NOBODY = 65534;

function sh(...argv: string[]): { ok: boolean; out: string } {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString() + r.stderr.toString() };
}

/** Whether this machine lets the test mount (root, with the capability): tried once on a scratch directory. */
function canMount(): string | null {
  if (process.getuid?.() !== 0) return "it mounts a tmpfs and a read-only bind mount, which needs root";
  const dir = mkdtempSync(join(tmpdir(), "sova-mount-probe-"));
  const r = sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir);
  if (r.ok) sh("umount", dir);
  rmSync(dir, { recursive: true, force: true });
  return r.ok ? null : `mount failed here (${r.out.trim()})`;
}

const why = canMount();
if (why)
  console.warn(`SKIP: tests/adversarial/storage.test.ts because ${why} (run the suite as root, as .ci/run does)`);

const mounts: string[] = [];
const open: Array<RelayHandle | RelayClient> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) {
    if ("stop" in x) await x.stop();
    else x.close();
  }
  for (const dir of mounts.splice(0).reverse()) {
    sh("umount", "-l", dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

function mountTmpfs(size: string): string {
  const dir = mkdtempSync(join(tmpdir(), "sova-state-"));
  expect(sh("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir).ok).toBe(true);
  mounts.push(dir);
  return dir;
}

/** `dir` again at another path, read-only. */
function readOnlyView(dir: string): string {
  const ro = mkdtempSync(join(tmpdir(), "sova-ro-"));
  expect(sh("mount", "--bind", "-o", "ro", dir, ro).ok).toBe(true);
  mounts.push(ro);
  return ro;
}

/** Runs the relay to its exit (at most 15 s): its code and stderr. */
async function exitOf(argv: string[]): Promise<{ code: number | null; stderr: string }> {
  const proc = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  const stderr = await new Response(proc.stderr).text();
  const code = await proc.exited;
  clearTimeout(timer);
  return { code: proc.signalCode ? null : code, stderr };
}

const RELAY = [...SOURCE, "--host", "127.0.0.1", "--port", "any", "--http-port", "0", "--history", "100"];

async function player(port: number, name: string): Promise<RelayClient> {
  const c = await connect({ port });
  open.push(c);
  await c.register({ name });
  return c;
}

describe.skipIf(why !== null)("2: a history write that fails at run time", () => {
  test(`a full disk: relaying goes on, logged once, /healthz /status /metrics say degraded; \
once there is room again history is written whole and survives a restart`, async () => {
    const dir = mountTmpfs("1m");
    const flags = ["--history", "10000", "--state-dir", dir, "--rate-limit", "0", "--http-port", "any"];
    const relay = await startProcess(SOURCE)(flags);
    open.push(relay);
    const a = await player(relay.port, "a");
    const b = await player(relay.port, "b");
    const edit = new Uint8Array(16_000).fill(7);
    for (let i = 0; i < 150; i++) a.sendUpdate(edit, BigInt(i));
    expect((await b.next("StateBroadcast", { where: (m) => m.timestamp === 149n, timeoutMs: 10_000 })).timestamp).toBe(
      149n,
    );
    await relay.waitForEvent("history_write_failed");
    const http = `http://127.0.0.1:${relay.httpPort}`;
    expect(await (await fetch(`${http}/healthz`)).text()).toMatch(
      /^degraded: history is not being saved \(disk full: SQLITE_FULL\); relaying goes on\n$/,
    );
    const status = (await (await fetch(`${http}/status`)).json()) as { storage: { state: string } };
    expect(status.storage.state).toBe("degraded");
    const metrics = await (await fetch(`${http}/metrics`)).text();
    expect(metrics).toContain("sova_relay_storage_degraded 1");
    expect(metrics).toMatch(/^sova_relay_storage_write_failures_total [1-9]\d*$/m);
    for (let i = 150; i < 200; i++) a.sendUpdate(edit, BigInt(i));
    await b.next("StateBroadcast", { where: (m) => m.timestamp === 199n, timeoutMs: 10_000 });
    expect(relay.events.filter((e) => e.event === "history_write_failed").length).toBe(1);
    expect(relay.process!.exitCode).toBeNull();

    expect(sh("mount", "-o", "remount,size=64m", dir).ok).toBe(true);
    await relay.waitForEvent("history_write_recovered", undefined, 40_000);
    expect(await (await fetch(`${http}/healthz`)).text()).toBe("ok\n");
    await relay.stop();
    const again = await startProcess(SOURCE)(["--history", "10000", "--state-dir", dir]);
    open.push(again);
    expect((await again.waitForEvent("history_loaded")).entries).toBe(200);
  }, 60_000);
});

describe.skipIf(why !== null)("11: start-up errors name the real cause", () => {
  test("--state-reset on a read-only mount: exit 2, one line saying so (not 'cannot listen')", async () => {
    const dir = mountTmpfs("1m");
    writeFileSync(join(dir, "history.sqlite"), "");
    const ro = readOnlyView(dir);
    const r = await exitOf([...RELAY, "--state-dir", ro, "--state-reset"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([
      `sova-relay: cannot discard the history (--state-reset) in --state-dir '${ro}'` +
        " (the file system is mounted read-only)",
    ]);
  });

  test("a history database on a read-only mount: exit 2, the cause, and no advice to discard it", async () => {
    const dir = mountTmpfs("1m");
    const first = await startProcess(SOURCE)(["--history", "10", "--state-dir", dir]);
    await first.waitForEvent("history_loaded");
    await first.stop();
    const ro = readOnlyView(dir);
    const r = await exitOf([...RELAY, "--state-dir", ro]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain(`cannot write the history database '${ro}/history.sqlite'`);
    expect(lines[0]).toContain("mounted read-only");
    expect(lines[0]).not.toContain("--state-reset");
  });

  test(`a history file restored as root, the relay running as another user: exit 2 at start-up naming it \
(it used to start, replay, and die at the first edit)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-owned-"));
    try {
      const first = await startProcess(SOURCE)(["--history", "10", "--state-dir", dir]);
      await first.waitForEvent("history_loaded");
      await first.stop();
      chownSync(dir, NOBODY, NOBODY);
      chownSync(join(dir, "session-key"), NOBODY, NOBODY);
      const r = await exitOf([
        "setpriv",
        "--reuid",
        `${NOBODY}`,
        "--regid",
        `${NOBODY}`,
        "--clear-groups",
        ...RELAY,
        "--state-dir",
        dir,
      ]);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(`cannot write the history database '${dir}/history.sqlite'`);
      expect(lines[0]).toContain(`the relay runs as uid ${NOBODY}`);
      expect(lines[0]).not.toContain("--state-reset");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
