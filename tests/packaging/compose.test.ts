/**
 * Both compose files, with the docs' compose recipes run as written: Debian's docker-compose
 * 1.29 on podman's API socket stands in for `docker compose` (tests/support/podman.ts). The
 * images are the ones the files name, made here (the relay's by the docs' `docker build`,
 * tagged ghcr.io/sova-org/sova-relay:VERSION; nats:2.9-alpine from Debian's nats-server 2.9),
 * so nothing is pulled. Each project runs in a directory of its own with copies of the files
 * in which only the published ports change (free ones on 127.0.0.1) and the fixed subnet (one
 * of this run's). Skipped, loudly, without root, podman or docker-compose.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import pkg from "../../package.json" with { type: "json" };
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import {
  type ApiService,
  apiService,
  containerLog,
  natsImage,
  PUBLISHED_IMAGE,
  podman,
  podmanSkipReason,
  relayImage,
  shell,
  uniqueName,
} from "../support/podman.ts";
import { fileWith, recipe } from "../support/recipes.ts";

const skip = podmanSkipReason();
if (skip) console.warn(`SKIP: the compose recipes because ${skip}`);

let api: ApiService | null = null;
/** Each project's directory and the compose file it runs. */
const projects: Array<{ dir: string; file: string }> = [];

beforeAll(async () => {
  if (skip) return;
  await Promise.all([relayImage(), natsImage()]);
  api = await apiService();
}, 900_000);

afterAll(async () => {
  for (const { dir, file } of projects) {
    await shell(`docker compose -f ${file} down -v`, { cwd: dir, env: api?.env });
    rmSync(dir, { recursive: true, force: true });
  }
  await api?.stop();
}, 120_000);

/** docker-compose 1.29 names a project after its directory. */
function project(file: string): { dir: string; name: string } {
  const name = uniqueName("compose");
  const dir = join(ROOT, ".tmp", name);
  mkdirSync(dir, { recursive: true });
  projects.push({ dir, file });
  return { dir, name };
}

function compose(script: string, dir: string) {
  return shell(script, { cwd: dir, env: api!.env });
}

function printedToken(stdout: string): string {
  const m = /^SOVA_RELAY_TOKENS=(\S+)$/m.exec(stdout);
  if (!m) throw new Error(`the recipe printed no token:\n${stdout}`);
  return m[1]!;
}

async function sessionIds(httpPort: number): Promise<string[]> {
  const status = (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as {
    sessions: Array<{ id: string }>;
  };
  return status.sessions.map((s) => s.id);
}

describe("the compose files name the published image", () => {
  test("ghcr.io/OWNER/sova-relay:VERSION, as the release workflow publishes it, with no build section", () => {
    const release = readFileSync(join(ROOT, ".github/workflows/release.yml"), "utf8");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the workflow's shell, not a template
    expect(release).toContain('image="ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/sova-relay"');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the workflow's shell, not a template
    expect(release).toContain('tags="$image:${GITHUB_REF_NAME#v}"');
    expect(PUBLISHED_IMAGE).toBe(`ghcr.io/sova-org/sova-relay:${pkg.version}`);
    for (const file of ["docker-compose.yml", "docker-compose.cluster.yml"]) {
      const text = readFileSync(join(ROOT, file), "utf8");
      expect(text).toContain(`image: \${SOVA_RELAY_IMAGE:-${PUBLISHED_IMAGE}}`);
      expect(text).not.toMatch(/^\s+build:/m);
    }
  });
});

describe.skipIf(skip !== null)("docker-compose.yml, as the docs run it", () => {
  test(`refuses to start without a token, then starts the published image with the token it printed, \
limits and a state volume; SOVA_RELAY_IMAGE runs a local build, which keeps the session ids (the volume)`, async () => {
    const { dir, name } = project("docker-compose.yml");
    const port = unusedPort();
    const httpPort = unusedPort();
    const subnet = 30 + (process.pid % 200);
    writeFileSync(
      join(dir, "docker-compose.yml"),
      fileWith("docker-compose.yml", [
        ['"9090:9090"', `"127.0.0.1:${port}:9090"`],
        ['"127.0.0.1:8080:8080"', `"127.0.0.1:${httpPort}:8080"`],
        ["172.28.0.", `172.28.${subnet}.`],
      ]),
    );
    const container = `${name}_relay_1`;

    const forgotten = await compose("docker compose up -d", dir);
    expect(forgotten.code).not.toBe(0);
    expect(forgotten.stderr).toContain("SOVA_RELAY_TOKENS is not set or empty; put it in .env");
    // What the recipe writes where openssl is missing: refused too, never one open session.
    writeFileSync(join(dir, ".env"), "SOVA_RELAY_TOKENS=\n");
    const empty = await compose("docker compose up -d", dir);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain("SOVA_RELAY_TOKENS is not set or empty; put it in .env");
    rmSync(join(dir, ".env"));

    const up = await compose(recipe("compose").text, dir);
    expect(up.code).toBe(0);
    const token = printedToken(up.stdout);
    await containerLog(container, /Listening on 0\.0\.0\.0:9090 .*1 token-protected/);
    const inspect = await podman([
      "inspect",
      container,
      "--format",
      "{{.ImageName}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}",
    ]);
    expect(inspect.stdout.trim()).toBe(`${PUBLISHED_IMAGE} 268435456 500000000 ${name}_sova-state:/var/lib/sova-relay`);

    const c = await connect({ port });
    await c.register({ name: "a", token });
    const ids = await sessionIds(httpPort);
    expect(ids).toHaveLength(1);
    c.close();

    // The recipe again keeps the token in .env (its last line, `up`, is the next step's here).
    const again = await compose(recipe("compose").with([["docker compose up -d\n", ""]]), dir);
    expect(printedToken(again.stdout)).toBe(token);

    // An image built here, in a new container on the same volume (an upgrade): the session keeps its id,
    // the key it is made with being in the volume. Every `up` after the first follows a `down` here:
    // podman's API reports an IPAM option docker-compose 1.29 does not expect, so it would refuse to
    // reuse a network with a fixed subnet.
    expect((await compose("docker compose down", dir)).code).toBe(0);
    const local = await compose(recipe("compose-build").text, dir);
    expect(`${local.code} ${local.stderr}`).toStartWith("0 ");
    await containerLog(container, /Listening on/);
    const image = await podman(["inspect", container, "--format", "{{.ImageName}}"]);
    expect(image.stdout.trim()).toBe(`localhost/sova-relay:${pkg.version}`);
    const d = await connect({ port });
    await d.register({ name: "d", token });
    expect(await sessionIds(httpPort)).toEqual(ids);
    d.close();
  }, 600_000);
});

describe.skipIf(skip !== null)("docker-compose.cluster.yml, as the docs run it", () => {
  test("two nodes and NATS from the published images; instances with the printed token meet across nodes", async () => {
    const { dir, name } = project("docker-compose.cluster.yml");
    const [a, b, ha, hb] = [unusedPort(), unusedPort(), unusedPort(), unusedPort()];
    writeFileSync(
      join(dir, "docker-compose.cluster.yml"),
      fileWith("docker-compose.cluster.yml", [
        ['"9090:9090"', `"127.0.0.1:${a}:9090"`],
        ['"9091:9090"', `"127.0.0.1:${b}:9090"`],
        ['"127.0.0.1:8080:8080"', `"127.0.0.1:${ha}:8080"`],
        ['"127.0.0.1:8081:8080"', `"127.0.0.1:${hb}:8080"`],
      ]),
    );
    copyFileSync(join(ROOT, "nats-cluster.conf"), join(dir, "nats-cluster.conf"));

    const up = await compose(recipe("compose-cluster").text, dir);
    expect(up.code).toBe(0);
    const token = printedToken(up.stdout);
    await containerLog(`${name}_relay-a_1`, /Node relay-b joined the cluster/);
    await containerLog(`${name}_relay-b_1`, /Node relay-a joined the cluster/);
    for (const node of ["relay-a", "relay-b"]) {
      const image = await podman(["inspect", `${name}_${node}_1`, "--format", "{{.ImageName}}"]);
      expect(image.stdout.trim()).toBe(PUBLISHED_IMAGE);
    }

    const onA = await connect({ port: a });
    const onB = await connect({ port: b });
    try {
      await onA.register({ name: "on-a", token, capabilities: ["presence"] });
      const reg = await onB.register({ name: "on-b", token });
      expect(reg.current_instances.map((i) => i.name)).toEqual(["on-a"]);
      onB.sendUpdate(Uint8Array.of(9), 42n);
      const m = await onA.next("StateBroadcast");
      expect({ from: m.source_instance_name, at: m.timestamp }).toEqual({ from: "on-b", at: 42n });
    } finally {
      onA.close();
      onB.close();
    }
  }, 600_000);
});
