/**
 * Watching and keeping a concert across a cluster: a spectator on one node sees
 * the edits of a player on another, and the session's history, kept once for the
 * whole cluster in JetStream, exports from NATS byte for byte. Real nats-server
 * and relay processes; skipped, loudly, without nats-server.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { RelayClient } from "../../src/client/client.ts";
import { parseRecording } from "../../src/client/recording.ts";
import { spectatorPath, writeSpectatorFile } from "../../src/storage/spectator-file.ts";
import { keyDigest, makeKey } from "../../src/watch/index.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import { ClientPool, type RelayHandle, startProcess } from "../support/relay.ts";
import { sovaEdit } from "../support/sova-edits.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const NATS =
  Bun.which("nats-server") ?? ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => Bun.file(p).size > 0);
if (!NATS)
  console.warn(
    "SKIP: tests/e2e/watch-cluster.test.ts because nats-server is not installed (apt-get install nats-server)",
  );
const maybe = NATS ? describe : describe.skip;

const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** nats-server with JetStream on a port of its own (it must be told one). */
async function startNats(): Promise<string> {
  const port = unusedPort();
  const proc: Subprocess<"ignore", "ignore", "pipe"> = Bun.spawn(
    [NATS!, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", mkdtempSync(join(tmpdir(), "sova-nats-"))],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  stops.push(async () => {
    proc.kill("SIGKILL");
    await proc.exited;
  });
  let log = "";
  for await (const chunk of proc.stderr) {
    log += new TextDecoder().decode(chunk);
    if (log.includes("Server is ready")) return `nats://127.0.0.1:${port}`;
  }
  throw new Error(`nats-server did not start:\n${log}`);
}

maybe("watching across a cluster", () => {
  test("a spectator on one node sees a player on another; the cluster's history exports byte for byte", async () => {
    const url = await startNats();
    const key = makeKey();
    const first = mkdtempSync(join(tmpdir(), "sova-node-"));
    writeSpectatorFile(spectatorPath(first), [{ session: "open", digest: keyDigest(key) }]);
    // The spectator file holds digests only: the same file on every node.
    const second = mkdtempSync(join(tmpdir(), "sova-node-"));
    cpSync(spectatorPath(first), spectatorPath(second));
    const node = async (dir: string, name: string): Promise<RelayHandle> => {
      const relay = await startProcess(SOURCE)([
        ...["--cluster", url, "--node-name", name, "--state-dir", dir, "--history", "100", "--http-port", "any"],
      ]);
      stops.push(() => relay.stop());
      await relay.waitForEvent("cluster_connected");
      return relay;
    };
    const [a, b] = [await node(first, "node-a"), await node(second, "node-b")];
    const pool = new ClientPool(() => a.port);
    stops.push(() => pool.closeAll());
    const alice: RelayClient = await pool.register("alice");
    for (const name of ["set_scene_band", "set_script", "chat"]) alice.sendUpdate(sovaEdit(name).bytes);

    const view = async () =>
      (await (await fetch(`http://127.0.0.1:${b.httpPort}/watch/${key}/view`)).json()) as {
        lines: Array<{ frames: Array<{ script?: string }> }>;
        feed: Array<{ by: string; text: string }>;
      };
    let seen = await view();
    for (let tries = 0; seen.feed.length < 3; tries++) {
      if (tries > 500) throw new Error("node b's spectator never saw node a's edits");
      await Bun.sleep(10);
      seen = await view();
    }
    expect(seen.lines[0]!.frames[2]!.script).toBe("n c");
    expect(seen.feed.map((e) => e.by)).toEqual(["alice", "alice", "alice"]);

    const exported = Bun.spawnSync([...SOURCE, "history", "export", "--cluster", url, "--session", "open"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(exported.stderr.toString()).toBe("");
    const rec = parseRecording(exported.stdout.toString(), "stdout");
    expect(rec.header).toMatchObject({ session: "open", frames: 3, source: "cluster" });
    expect(rec.frames.map((f) => Buffer.from(f.data).toString("hex"))).toEqual(
      ["set_scene_band", "set_script", "chat"].map((n) => Buffer.from(sovaEdit(n).bytes).toString("hex")),
    );
  }, 60_000);
});
