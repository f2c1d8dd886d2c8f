/**
 * The commands of docs/watching.md and docs/recordings.md run as written, through
 * `sh`, with `sova-relay` on PATH (the sources behind a one-line wrapper) and only
 * the host's values put in: the state directory, the session's id, the relay's
 * address and port, and, for pkill, the relay's process name.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RelayClient } from "../../src/client/client.ts";
import { parseRecording } from "../../src/client/recording.ts";
import { sessionHash } from "../../src/core/access.ts";
import { loadSessionSecret } from "../../src/storage/session-key.ts";
import { ROOT } from "../support/paths.ts";
import { recipe } from "../support/recipes.ts";
import { ClientPool, startProcess } from "../support/relay.ts";
import { sovaEdit } from "../support/sova-edits.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const TOKEN = "docs-concert-token-Hq3Vd8";
const work = mkdtempSync(join(tmpdir(), "sova-watch-docs-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A directory whose `sova-relay` runs the sources, as an installed binary would run. */
const bin = (() => {
  const dir = join(work, "bin");
  mkdirSync(dir);
  writeFileSync(join(dir, "sova-relay"), `#!/bin/sh\nexec ${SOURCE.map((p) => `'${p}'`).join(" ")} "$@"\n`);
  chmodSync(join(dir, "sova-relay"), 0o755);
  return dir;
})();

const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TOKEN };

function sh(script: string, cwd = work): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["sh", "-c", script], { cwd, env, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

const stops: Array<() => unknown> = [];
afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
});

describe("docs/watching.md", () => {
  test("watch-enable: a key made in the state directory, the relay told with SIGHUP, the page served", async () => {
    const dir = mkdtempSync(join(work, "state-"));
    // `pkill -x sova-relay` would reach every relay on the machine (other suites' too): this relay runs
    // under a name of its own (Bun behind a link so called, which is what pkill -x matches), and the
    // recipe's pkill names it instead.
    const name = `sr-${Math.random().toString(16).slice(2, 10)}`;
    symlinkSync(process.execPath, join(work, name));
    const relay = await startProcess([join(work, name), SOURCE[1]!])(["--state-dir", dir, "--http-port", "any"]);
    stops.push(() => relay.stop());
    const before = relay.events.length;
    const script = recipe("watch-enable").with([
      ["/var/lib/sova-relay", dir],
      ["pkill -HUP -x sova-relay", `pkill -HUP -x ${name}`],
    ]);
    const r = sh(script);
    expect(r.code).toBe(0);
    const key = /\/watch\/([A-Za-z0-9_-]{32})/.exec(r.out)?.[1];
    expect(key).toBeDefined();
    await relay.waitForEvent("watch_keys_loaded", (e) => relay.events.indexOf(e) >= before && e.sessions === 1);
    expect((await fetch(`http://127.0.0.1:${relay.httpPort}/watch/${key}`)).status).toBe(200);
  }, 30_000);
});

describe("docs/recordings.md", () => {
  test("history-export, replay and replay-watch, as written", async () => {
    // A concert kept by a relay with history on disk, in a token session.
    const dir = mkdtempSync(join(work, "state-"));
    const concert = await startProcess(SOURCE)(["--state-dir", dir, "--history", "100", "--token", TOKEN]);
    const players = new ClientPool(() => concert.port);
    const alice = await players.register("alice", { token: TOKEN });
    const bob: RelayClient = await players.register("bob", { token: TOKEN });
    for (const name of ["set_scene_band", "set_script", "chat"]) alice.sendUpdate(sovaEdit(name).bytes);
    for (let i = 0; i < 3; i++) await bob.next("StateBroadcast");
    players.closeAll();
    await concert.stop();
    const session = sessionHash(TOKEN, loadSessionSecret(dir));

    const exported = sh(
      recipe("history-export").text.replaceAll("/var/lib/sova-relay", dir).replaceAll("3fa2c1d09b7e", session),
    );
    expect(exported).toMatchObject({ code: 0, out: "" });
    expect(existsSync(join(work, "concert.jsonl"))).toBe(true);
    const rec = parseRecording(await Bun.file(join(work, "concert.jsonl")).text(), "concert.jsonl");
    expect(rec.frames).toHaveLength(3);

    // Played into another relay's session, twice (the second time faster): a listener gets it all twice.
    const target = await startProcess(SOURCE)(["--token", TOKEN]);
    stops.push(() => target.stop());
    const pool = new ClientPool(() => target.port);
    stops.push(() => pool.closeAll());
    const listener = await pool.register("listener", { token: TOKEN });
    const played = sh(
      recipe("replay").text.replaceAll("relay.example.org", "127.0.0.1").replaceAll("9090", String(target.port)),
    );
    expect(played.code).toBe(0);
    for (let i = 0; i < 6; i++)
      expect((await listener.next("StateBroadcast")).source_instance_name).toBe(
        `${rec.frames[i % 3]!.source} (replay)`,
      );
    // As the page says: with TOKEN unset, the same lines are refused before connecting.
    const unset = Bun.spawnSync(["sh", "-c", recipe("replay").text.replaceAll("9090", String(target.port))], {
      cwd: work,
      env: { ...env, TOKEN: "" },
      stderr: "pipe",
    });
    expect([unset.exitCode, unset.stderr.toString()]).toEqual([
      2,
      "sova-relay: option --token needs a value\n".repeat(2),
    ]);

    // Into a page on this machine: the address printed first, the page filling.
    const watch = Bun.spawn(["sh", "-c", recipe("replay-watch").text], {
      cwd: work,
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    // sh runs the command as its child: stop the child too, or the replay outlives the test.
    stops.push(() => {
      Bun.spawnSync(["pkill", "-INT", "-P", String(watch.pid)]);
      watch.kill("SIGINT");
    });
    const reader = watch.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) out += new TextDecoder().decode((await reader.read()).value);
    const url = out.trim();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/watch\/[A-Za-z0-9_-]{32}$/);
    for (let tries = 0; ; tries++) {
      const view = (await (await fetch(`${url}/view`)).json()) as { feed: unknown[] };
      if (view.feed.length === 3) break;
      if (tries > 300) throw new Error("the page never filled");
      await Bun.sleep(10);
    }
  }, 60_000);
});
