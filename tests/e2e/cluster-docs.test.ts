/**
 * docs/cluster.md's routed NATS cluster, as written: three nats-servers from the
 * page's configuration (each VPS's name and address put in, on loopback), a relay
 * node on each side pointed at the servers as the page says, one session across
 * them; then the server a node is on dies and the session is whole again through
 * the other two (which keep JetStream's quorum). Real nats-server processes (Debian's; .ci/run installs it).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { updateValues } from "../../src/client/client.ts";
import { blockAfter } from "../support/docs.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import { ClientPool, type RelayHandle, startProcess } from "../support/relay.ts";

const NATS =
  Bun.which("nats-server") ??
  ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => Bun.file(p).size > 0) ??
  null;
if (!NATS)
  console.warn(
    "SKIP: docs/cluster.md's routed NATS cluster because nats-server is not installed (apt-get install nats-server)",
  );

/** An ensemble's token: its players on two nodes meet only if the nodes agreed on one session secret. */
const TOKEN = "docs-cluster-token-Xq7Lm2Pz";
const work = mkdtempSync(join(tmpdir(), "sova-docs-cluster-"));
const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  rmSync(work, { recursive: true, force: true });
});

interface Server {
  url: string;
  /** Its monitoring port (`-m`, beside the page's configuration): who is connected. */
  monitor: number;
  proc: Subprocess<"ignore", "ignore", "pipe">;
}

/** The page's configuration for vps`n`, with loopback ports where the page has the VPSes' names. */
function configFor(n: number, clientPorts: number[], routePorts: number[]): string {
  let text = blockAfter("docs/cluster.md", "so it moves to another server when its own goes").text;
  text = text.replace('server_name: "vps1"', `server_name: "vps${n}"`);
  text = text.replace('listen: "0.0.0.0:4222"', `listen: "127.0.0.1:${clientPorts[n - 1]}"`);
  text = text.replace('listen: "0.0.0.0:6222"', `listen: "127.0.0.1:${routePorts[n - 1]}"`);
  for (let i = 1; i <= 3; i++) text = text.replace(`nats://vps${i}:6222`, `nats://127.0.0.1:${routePorts[i - 1]}`);
  text = text.replace('store_dir: "/var/lib/nats"', `store_dir: "${join(work, `store${n}`)}"`);
  if (/vps\d:|0\.0\.0\.0|\/var\/lib/.test(text)) throw new Error(`the page's configuration changed shape:\n${text}`);
  return text;
}

async function startServer(n: number, clientPorts: number[], routePorts: number[]): Promise<Server> {
  const file = join(work, `vps${n}.conf`);
  writeFileSync(file, configFor(n, clientPorts, routePorts));
  const monitor = unusedPort();
  const proc = Bun.spawn([NATS!, "-c", file, "-m", String(monitor)], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  stops.push(async () => {
    proc.kill("SIGKILL");
    await proc.exited;
  });
  // Read on after the ready line: a closed pipe would end nats-server at its next log line.
  const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
  void (async () => {
    let text = "";
    for await (const chunk of proc.stderr) {
      text += new TextDecoder().decode(chunk);
      if (text.includes("Server is ready")) resolve();
    }
    reject(new Error(`nats-server vps${n} exited:\n${text}`));
  })();
  await ready;
  return { url: `nats://127.0.0.1:${clientPorts[n - 1]}`, monitor, proc };
}

describe.skipIf(!NATS)("docs/cluster.md: one region on three VPSes, a routed NATS cluster", () => {
  test("nodes share one session across the servers, and keep it when the server a node is on dies", async () => {
    const clientPorts = [unusedPort(), unusedPort(), unusedPort()];
    const routePorts = [unusedPort(), unusedPort(), unusedPort()];
    const servers = await Promise.all([1, 2, 3].map((n) => startServer(n, clientPorts, routePorts)));
    const all = servers.map((s) => s.url).join(",");
    const start = startProcess([process.execPath, join(ROOT, "src/main.ts")]);
    const node = async (name: string) => {
      const relay = await start(["--node-name", name], { SOVA_RELAY_CLUSTER: all, SOVA_RELAY_TOKENS: TOKEN });
      stops.push(() => relay.stop());
      await relay.waitForEvent("cluster_connected", undefined, 10_000);
      return relay;
    };
    const a = await node("a");
    const b = await node("b");
    const poolA = new ClientPool(() => a.port);
    const poolB = new ClientPool(() => b.port);
    stops.push(async () => {
      poolA.closeAll();
      poolB.closeAll();
    });

    const alice = await poolA.register("alice", { token: TOKEN });
    await b.waitForEvent("cluster_node_up", undefined, 10_000);
    const bob = await poolB.register("bob", { token: TOKEN });
    alice.sendUpdate(Uint8Array.of(1, 2, 3));
    const first = await bob.next("StateBroadcast", { timeoutMs: 5000 });
    expect(first.source_instance_name).toBe("alice");

    // The server with a relay on it dies; that relay moves to one of the two left.
    let victim: Server | undefined;
    for (const srv of servers) {
      const connz = (await (await fetch(`http://127.0.0.1:${srv.monitor}/connz`)).json()) as {
        num_connections: number;
      };
      if (connz.num_connections > 0) victim = srv;
    }
    expect(victim).toBeDefined();
    victim!.proc.kill("SIGKILL");
    await victim!.proc.exited;
    const moved = (r: RelayHandle) =>
      r.waitForEvent("cluster_connected", (e) => String(e.msg).includes("reconnected"), 20_000).catch(() => null);
    const reconnected = await Promise.race([moved(a), moved(b)]);
    expect(reconnected).not.toBeNull();
    // Each node hears the other again (heartbeats carry the members) before the edit goes.
    for (let i = 0; ; i++) {
      alice.sendUpdate(Uint8Array.of(4, 5, 6, i));
      const got = await bob
        .next("StateBroadcast", { timeoutMs: 1000, where: (m) => updateValues(m).length === 4 })
        .catch(() => null);
      if (got) {
        expect(got.source_instance_name).toBe("alice");
        break;
      }
      if (i > 15)
        throw new Error(
          `the session did not come back through the third server:\n${a.logs.join("")}\n${b.logs.join("")}`,
        );
    }
  }, 60_000);
});
