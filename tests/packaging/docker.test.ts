/**
 * The docs' `docker run` lines, run as written with podman standing in for Docker (the
 * image built once by the docs' `docker build`, tagged with its published name). Changed,
 * and only this: the published ports are free ones on 127.0.0.1 (9090 may be taken here,
 * and nothing should listen on every interface), and the container and volume names are
 * this run's own. Skipped, loudly, without root or podman.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { connect } from "../../src/client/client.ts";
import { unusedPort } from "../support/ports.ts";
import { containerLog, podman, podmanSkipReason, relayImage, shell, uniqueName } from "../support/podman.ts";
import { type Recipe, recipe } from "../support/recipes.ts";

const skip = podmanSkipReason();
if (skip) console.warn(`SKIP: the docker run recipes because ${skip}`);

const containers: string[] = [];
const volumes: string[] = [];
afterAll(async () => {
  for (const c of containers) await podman(["rm", "-f", "-v", c]);
  for (const v of volumes) await podman(["volume", "rm", "-f", v]);
});

/** A recipe's `docker run`, with this run's names and free loopback ports. */
function ours(docs: Recipe, name: string, volume?: string) {
  const port = unusedPort();
  const httpPort = unusedPort();
  const script = docs.with([
    ["--name sova-relay", `--name ${name}`],
    ["-p 9090:9090", `-p 127.0.0.1:${port}:9090`],
    ["-p 127.0.0.1:8080:8080", `-p 127.0.0.1:${httpPort}:8080`],
    ...(volume ? ([["-v sova-state:", `-v ${volume}:`]] as const) : []),
  ]);
  return { script, port, httpPort };
}

/** The token the recipe printed. */
function printedToken(stdout: string): string {
  const m = /^session token: (\S+)$/m.exec(stdout);
  if (!m) throw new Error(`the recipe printed no token:\n${stdout}`);
  return m[1]!;
}

async function play(port: number, name: string, token: string | null) {
  const c = await connect({ port });
  try {
    return await c.register({ name, token });
  } finally {
    c.close();
  }
}

describe.skipIf(skip !== null)("docker run, as the docs write it (podman)", () => {
  test("Install's docker run starts, prints a token the relay takes, and never logs it", async () => {
    await relayImage();
    const name = uniqueName("sova-relay-run");
    containers.push(name);
    const { script, port, httpPort } = ours(recipe("docker-run"), name);
    const r = await shell(script);
    expect(r.stderr).not.toContain("Error");
    expect(r.code).toBe(0);
    const token = printedToken(r.stdout);
    expect(token.length).toBeGreaterThanOrEqual(32);
    await containerLog(name, /Listening on 0\.0\.0\.0:9090 .*1 token-protected/);

    expect((await play(port, "alice", token)).success).toBe(true);
    await expect(play(port, "mallory", "wrong-but-long-enough-token")).rejects.toThrow("Invalid session token");
    const status = await (await fetch(`http://127.0.0.1:${httpPort}/status`)).text();
    expect(JSON.parse(status).status).toBe("ok");

    const inspect = await podman([
      "inspect",
      name,
      "--format",
      "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.User}}",
    ]);
    expect(inspect.stdout.trim()).toBe("268435456 500000000 65532:65532");
    const health = await podman(["healthcheck", "run", name]);
    expect(health.code).toBe(0);
    const logs = await podman(["logs", name]);
    expect(logs.stdout + logs.stderr).toContain("registered");
    expect(logs.stdout + logs.stderr + status).not.toContain(token);
  }, 600_000);

  test("Docker's run with history keeps the session and its history in the volume across a restart", async () => {
    await relayImage();
    const name = uniqueName("sova-relay-history");
    const volume = uniqueName("sova-state");
    containers.push(name);
    volumes.push(volume);
    const { script, port, httpPort } = ours(recipe("docker-run-history"), name, volume);
    const r = await shell(script);
    expect(r.code).toBe(0);
    const token = printedToken(r.stdout);
    await containerLog(name, /Listening on/);

    const a = await connect({ port });
    await a.register({ name: "a", token });
    a.sendUpdate(Uint8Array.of(1, 2, 3), 7n);
    await a.ping();
    a.close();
    const sessionIds = async () =>
      (
        (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as { sessions: Array<{ id: string }> }
      ).sessions.map((s) => s.id);
    const before = await sessionIds();

    const since = new Date().toISOString();
    expect((await podman(["restart", name])).code).toBe(0);
    await containerLog(name, /Listening on/, 30_000, since);

    const b = await connect({ port });
    try {
      await b.register({ name: "b", token });
      const m = await b.next("StateBroadcast");
      expect({ from: m.source_instance_name, at: m.timestamp }).toEqual({ from: "a", at: 7n });
    } finally {
      b.close();
    }
    expect(await sessionIds()).toEqual(before);
  }, 600_000);
});
