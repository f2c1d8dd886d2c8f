/**
 * The docs' `docker` commands, run as written with podman standing in for Docker (the image
 * built once by the docs' `docker build`, tagged with its published name; prom/prometheus made
 * from Debian's prometheus), each in a directory of its own as a host's home would be. Changed,
 * and only this: the published ports are free ones on 127.0.0.1 (9090 may be taken here, and
 * nothing should listen on every interface), the container, volume and network names are this
 * run's own, `docker pull` looks at the image already here (no registry is reachable), and
 * Prometheus scrapes every second instead of every 15. Skipped, loudly, without root or podman.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import {
  containerLog,
  podman,
  podmanSkipReason,
  prometheusImage,
  relayImage,
  shell,
  uniqueName,
} from "../support/podman.ts";
import { type Recipe, recipe, type Substitution } from "../support/recipes.ts";

const skip = podmanSkipReason();
if (skip) console.warn(`SKIP: the docker recipes because ${skip}`);

const containers: string[] = [];
const volumes: string[] = [];
const networks: string[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const c of containers) await podman(["rm", "-f", "-v", c]);
  for (const v of volumes) await podman(["volume", "rm", "-f", v]);
  for (const n of networks) await podman(["network", "rm", "-f", n]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 120_000);

/** This run's names and free loopback ports for one relay, and the substitutions that put them in a recipe. */
function host() {
  const h = {
    name: uniqueName("sova-relay"),
    volume: uniqueName("sova-state"),
    port: unusedPort(),
    httpPort: unusedPort(),
    dir: mkdtempSync(join(ROOT, ".tmp", "docker-home-")),
  };
  containers.push(h.name);
  volumes.push(h.volume);
  dirs.push(h.dir);
  const subs: Substitution[] = [
    ["--name sova-relay", `--name ${h.name}`],
    ["-p 9090:9090", `-p 127.0.0.1:${h.port}:9090`],
    ["-p 127.0.0.1:8080:8080", `-p 127.0.0.1:${h.httpPort}:8080`],
    ["-v sova-state:", `-v ${h.volume}:`],
  ];
  return {
    ...h,
    run: (docs: Recipe, more: Substitution[] = []) => shell(docs.with([...subs, ...more]), { cwd: h.dir }),
  };
}

/** The token the recipe printed. */
function printedToken(stdout: string): string {
  const m = /^session token: (\S+)$/m.exec(stdout);
  if (!m) throw new Error(`the recipe printed no token:\n${stdout}`);
  return m[1]!;
}

/** The relay's session ids while an instance with `token` is connected. */
async function sessionIds(port: number, httpPort: number, token: string): Promise<string[]> {
  const c = await connect({ port });
  try {
    await c.register({ name: "looking", token });
    const status = (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as {
      sessions: Array<{ id: string }>;
    };
    return status.sessions.map((s) => s.id);
  } finally {
    c.close();
  }
}

async function register(port: number, name: string, token: string | null) {
  const c = await connect({ port });
  try {
    return await c.register({ name, token });
  } finally {
    c.close();
  }
}

describe.skipIf(skip !== null)("docker, as the docs run it (podman)", () => {
  test("the README's docker run starts, prints a token the relay takes, and never logs it", async () => {
    await relayImage();
    const h = host();
    const r = await h.run(recipe("docker-run"));
    expect(r.stderr).not.toContain("Error");
    expect(r.code).toBe(0);
    const token = printedToken(r.stdout);
    expect(token.length).toBeGreaterThanOrEqual(32);
    await containerLog(h.name, /Listening on 0\.0\.0\.0:9090 .*1 token-protected/);

    expect((await register(h.port, "alice", token)).success).toBe(true);
    await expect(register(h.port, "mallory", "wrong-but-long-enough-token")).rejects.toThrow("Invalid session token");
    const status = await (await fetch(`http://127.0.0.1:${h.httpPort}/status`)).text();
    expect(JSON.parse(status).status).toBe("ok");

    const inspect = await podman([
      ...["inspect", h.name, "--format"],
      "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.User}} {{.HostConfig.RestartPolicy.Name}}",
    ]);
    expect(inspect.stdout.trim()).toBe("268435456 500000000 65532:65532 unless-stopped");
    expect((await podman(["healthcheck", "run", h.name])).code).toBe(0);
    const logs = await podman(["logs", h.name]);
    expect(logs.stdout + logs.stderr).toContain("registered");
    expect(logs.stdout + logs.stderr + status).not.toContain(token);
  }, 600_000);

  test("the run with history keeps the session and its history in the volume across a restart", async () => {
    await relayImage();
    const h = host();
    const r = await h.run(recipe("docker-run-history"));
    expect(r.code).toBe(0);
    const token = printedToken(r.stdout);
    await containerLog(h.name, /Listening on/);

    const a = await connect({ port: h.port });
    await a.register({ name: "a", token });
    a.sendUpdate(Uint8Array.of(1, 2, 3), 7n);
    await a.ping();
    a.close();
    const before = await sessionIds(h.port, h.httpPort, token);

    const since = new Date().toISOString();
    expect((await podman(["restart", h.name])).code).toBe(0);
    await containerLog(h.name, /Listening on/, 30_000, since);
    const b = await connect({ port: h.port });
    try {
      await b.register({ name: "b", token });
      const m = await b.next("StateBroadcast");
      expect({ from: m.source_instance_name, at: m.timestamp }).toEqual({ from: "a", at: 7n });
    } finally {
      b.close();
    }
    expect(await sessionIds(h.port, h.httpPort, token)).toEqual(before);
  }, 600_000);

  test(`an upgrade keeps the token and the session; the volume's backup restores into another volume; \
a Prometheus container on the relay's network scrapes it`, async () => {
    await Promise.all([relayImage(), prometheusImage()]);
    const h = host();
    const first = await h.run(recipe("docker-run"));
    const token = printedToken(first.stdout);
    await containerLog(h.name, /Listening on/);
    const ids = await sessionIds(h.port, h.httpPort, token);

    const since = new Date().toISOString();
    const upgrade = await h.run(recipe("docker-upgrade"), [
      ["docker pull ", "docker image inspect --format '{{.Id}}' "],
      ["docker stop sova-relay && docker rm sova-relay", `docker stop ${h.name} && docker rm ${h.name}`],
    ]);
    expect(`${upgrade.code} ${upgrade.stderr}`).toStartWith("0");
    await containerLog(h.name, /Listening on/, 30_000, since);
    expect(await sessionIds(h.port, h.httpPort, token)).toEqual(ids);

    const backup = await shell(recipe("docker-backup").with([["sova-state:", `${h.volume}:`]]), { cwd: h.dir });
    expect(backup.code).toBe(0);
    const restored = uniqueName("sova-state-restored");
    volumes.push(restored);
    const restore = await shell(recipe("docker-restore").with([["sova-state:", `${restored}:`]]), { cwd: h.dir });
    expect(restore.code).toBe(0);
    const keyOf = async (volume: string) =>
      (
        await podman([
          ...["run", "--rm", "-v", `${volume}:/data:ro`, "debian:bookworm-slim"],
          ...["stat", "-c", "%u %a", "/data/session-key", "/data"],
        ])
      ).stdout +
      (
        await podman([
          "run",
          "--rm",
          "-v",
          `${volume}:/data:ro`,
          "debian:bookworm-slim",
          "sha256sum",
          "/data/session-key",
        ])
      ).stdout;
    const original = await keyOf(h.volume);
    expect(original).toStartWith("65532 600\n65532 755\n");
    expect(await keyOf(restored)).toBe(original);

    const network = uniqueName("sova");
    const prometheus = uniqueName("prometheus");
    const promPort = unusedPort();
    networks.push(network);
    containers.push(prometheus);
    writeFileSync(
      join(h.dir, "prometheus.yml"),
      recipe("prometheus-yml").with([
        ['"sova-relay:8080"', `"${h.name}:8080"`],
        ["scrape_interval: 15s", "scrape_interval: 1s"],
      ]),
    );
    const monitor = await shell(
      recipe("prometheus-container").with([
        ["docker network create sova", `docker network create ${network}`],
        ["docker network connect sova sova-relay", `docker network connect ${network} ${h.name}`],
        ["--name prometheus --network sova", `--name ${prometheus} --network ${network}`],
        ["-p 127.0.0.1:9091:9090", `-p 127.0.0.1:${promPort}:9090`],
      ]),
      { cwd: h.dir },
    );
    expect(`${monitor.code} ${monitor.stderr}`).toStartWith("0");
    await containerLog(prometheus, /Server is ready to receive web requests/);
    // Prometheus's own state, asked until its first scrape is in (it reports the target's health after it).
    let target: { health: string; lastError: string } | undefined;
    for (const started = Date.now(); Date.now() - started < 20_000; await Bun.sleep(250)) {
      const body = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/targets`)).json()) as {
        data: { activeTargets: Array<{ health: string; lastError: string }> };
      };
      target = body.data.activeTargets[0];
      if (target && target.health !== "unknown") break;
    }
    expect(target).toEqual(expect.objectContaining({ health: "up", lastError: "" }));
  }, 600_000);
});
