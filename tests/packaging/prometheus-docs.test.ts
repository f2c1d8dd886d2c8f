/**
 * docs/docker.md's prometheus.yml, as written, scraped by a real Prometheus
 * (Debian's package; .ci/run installs it) from a relay: the target comes up and
 * the relay's families are there to query. The relay's name on the container
 * network becomes its loopback address here, and the 15 s interval one second,
 * so the test does not wait for a quarter of a minute; nothing else changes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blockAfter } from "../support/docs.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import { startProcess } from "../support/relay.ts";

const PROMETHEUS = Bun.which("prometheus") ?? null;
if (!PROMETHEUS)
  console.warn(
    "SKIP: docs/docker.md's Prometheus scrape because prometheus is not installed (apt-get install prometheus)",
  );

const work = mkdtempSync(join(tmpdir(), "sova-docs-prometheus-"));
const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  rmSync(work, { recursive: true, force: true });
});

interface Target {
  health: string;
  lastError: string;
}

describe.skipIf(!PROMETHEUS)("docs/docker.md: monitoring with Prometheus", () => {
  test("the page's scrape configuration reaches /metrics and the relay's families can be queried", async () => {
    const relay = await startProcess([process.execPath, join(ROOT, "src/main.ts")])(["--http-port", "any"]);
    stops.push(() => relay.stop());
    const page = blockAfter("docs/docker.md", "while the host still publishes it on loopback only");
    expect(page.text).toContain('targets: ["sova-relay:8080"]');
    const config = page.text
      .replace('targets: ["sova-relay:8080"]', `targets: ["127.0.0.1:${relay.httpPort}"]`)
      .replace("scrape_interval: 15s", "scrape_interval: 1s");
    writeFileSync(join(work, "prometheus.yml"), config);

    const port = unusedPort();
    const proc = Bun.spawn(
      [
        PROMETHEUS!,
        `--config.file=${join(work, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(work, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    stops.push(async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    });
    const log: string[] = [];
    const { promise: ready, resolve } = Promise.withResolvers<void>();
    void (async () => {
      for await (const chunk of proc.stderr) {
        log.push(new TextDecoder().decode(chunk));
        if (log.join("").includes("Server is ready to receive web requests")) resolve();
      }
    })();
    await Promise.race([
      ready,
      proc.exited.then(() => Promise.reject(new Error(`prometheus exited:\n${log.join("")}`))),
    ]);

    const api = (path: string) => fetch(`http://127.0.0.1:${port}/api/v1/${path}`).then((r) => r.json()) as never;
    // Prometheus's own state, asked until its first scrape is in (it reports the target's health after it).
    let target: Target | undefined;
    for (const started = Date.now(); Date.now() - started < 15_000; await Bun.sleep(200)) {
      const body: { data: { activeTargets: Target[] } } = await api("targets");
      target = body.data.activeTargets[0];
      if (target && target.health !== "unknown") break;
    }
    expect(target).toEqual(expect.objectContaining({ health: "up", lastError: "" }));
    const up: { data: { result: Array<{ value: [number, string] }> } } = await api("query?query=sova_relay_up");
    expect(up.data.result[0]?.value[1]).toBe("1");
    const families: { data: string[] } = await api("label/__name__/values");
    expect(families.data).toContain("sova_relay_connections_total");
    expect(families.data).toContain("process_resident_memory_bytes");
  }, 30_000);
});
