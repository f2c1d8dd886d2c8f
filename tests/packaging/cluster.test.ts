/**
 * The docs' cluster recipes, run as written on machines of their own (tests/support/machines.ts):
 * the one-machine example (nats-server and two nodes), and geography (a nats-server per region
 * joined by gateways, with the docs' nats-server.conf at /etc/nats/nats-server.conf and its
 * gateway URLs resolving to the other regions' machines, and a relay per region). Players with
 * the session token on different nodes must be in one session. Needs root, nats-server and
 * the compiled binary; skipped loudly otherwise.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type MachineSet, machinesSkipReason, startMachines } from "../support/machines.ts";
import { BINARY, ROOT } from "../support/paths.ts";
import { recipe } from "../support/recipes.ts";

const NATS = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p)) ?? Bun.which("nats-server");
const skip =
  machinesSkipReason() ??
  (NATS ? null : "nats-server is not installed (apt-get install nats-server; .ci/run does)") ??
  (existsSync(BINARY) ? null : `${BINARY} is not built (npm run build)`);
if (skip) console.warn(`SKIP: the cluster recipes because ${skip}`);

const INSTALL = `install -m 0755 ${BINARY} /usr/local/bin/sova-relay`;
function play(args: string): string {
  return `${process.execPath} ${join(ROOT, "tests/support/play.ts")} ${args}`;
}

let set: MachineSet | null = null;
afterEach(async () => {
  await set?.stop();
  set = null;
});

describe.skipIf(skip !== null)("a cluster, as the docs start it", () => {
  test("on one machine: nats-server and two nodes; players with the printed token on each node play together", async () => {
    set = await startMachines(["host"]);
    const host = set.get("host");
    await host.run(INSTALL);
    const started = host.start(recipe("cluster").text);
    const token = (await started.waitForLog(/^session token: /)).trim().split(" ").at(-1)!;
    await started.waitForLog(/Listening on 0\.0\.0\.0:9090 /);
    await started.waitForLog(/Listening on 0\.0\.0\.0:9091 /);
    await started.waitForLog(/Node (a|b) joined the cluster/);
    const [a, b] = await Promise.all([
      host.run(play(`--port 9090 --name on-a --token ${token} --with on-b`)),
      host.run(play(`--port 9091 --name on-b --token ${token} --with on-a`)),
    ]);
    expect([a.stderr, b.stderr]).toEqual(["", ""]);
    expect(started.logs.join("").replace(/^session token: .*$/m, "")).not.toContain(token);
  }, 120_000);

  test("geography: three regions, a nats-server with the docs' configuration and a relay in each; one session", async () => {
    const regions = ["lon", "nyc", "tyo"];
    set = await startMachines(regions.map((r) => `${r}.example.org`));
    const token = "a-token-for-three-regions-0123";
    const relays = [];
    for (const region of regions) {
      const m = set.get(`${region}.example.org`);
      await m.run(INSTALL);
      // "The same in New York and Tokyo with their names": the server's, its cluster's and its gateway's.
      const conf = recipe("nats-gateways").with([
        ['server_name: "lon"', `server_name: "${region}"`],
        ['cluster { name: "lon"', `cluster { name: "${region}"`],
        ['gateway {\n  name: "lon"', `gateway {\n  name: "${region}"`],
      ]);
      await m.write("/etc/nats/nats-server.conf", conf);
      m.start(`${NATS} -c /etc/nats/nats-server.conf`);
    }
    // JetStream across gateways needs a metadata leader before the relays can claim names.
    for (const region of regions) {
      const m = set.get(`${region}.example.org`);
      const relay = m.start(recipe("cluster-region").with([["--node-name lon", `--node-name ${region}`]]), {
        env: { TOKEN: token },
      });
      relays.push(relay);
    }
    for (const relay of relays) await relay.waitForLog(/instance names are claimed across the cluster/, 60_000);
    const results = await Promise.all(
      regions.map((region) =>
        set!.get(`${region}.example.org`).run(
          play(
            `--port 9090 --name in-${region} --token ${token} --with ${regions
              .filter((r) => r !== region)
              .map((r) => `in-${r}`)
              .join(",")}`,
          ),
        ),
      ),
    );
    expect(results.map((r) => r.stderr)).toEqual(["", "", ""]);
    expect(results.map((r) => JSON.parse(r.stdout).got)).toEqual([
      ["in-nyc", "in-tyo"],
      ["in-lon", "in-tyo"],
      ["in-lon", "in-nyc"],
    ]);
  }, 180_000);
});
