/**
 * Scenario 7: one session spread over three relay nodes joined by one
 * nats-server (--cluster), beside the same load on one relay; and what the
 * cluster costs in memory. Needs Debian's nats-server; skipped without it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RelayClient } from "../src/client.ts";
import { connectInstances, runPhase, type PhaseResult, type PhaseSpec, type Pool } from "./load.ts";
import { launchRelay, rssOf, type BenchRelay } from "./relay-process.ts";

export function natsServerPath(): string | null {
  return Bun.which("nats-server") ?? ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => Bun.file(p).size > 0) ?? null;
}

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

export interface NatsProcess {
  url: string;
  rssMb(): number | null;
  stop(): Promise<void>;
}

export async function startNatsServer(binary: string): Promise<NatsProcess> {
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "sova-bench-nats-"));
  const proc = Bun.spawn([binary, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let text = "";
  for await (const chunk of proc.stderr) {
    text += new TextDecoder().decode(chunk);
    if (text.includes("Server is ready")) break;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    rssMb: () => rssOf(proc.pid),
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The three nodes seen as one relay by the load generator: memory and CPU summed. */
function combined(nodes: BenchRelay[]): BenchRelay {
  const sum = (f: (r: BenchRelay) => number | null) => {
    let total = 0;
    for (const r of nodes) {
      const v = f(r);
      if (v === null) return null;
      total += v;
    }
    return total;
  };
  return {
    host: nodes[0]!.host,
    port: nodes[0]!.port,
    label: `${nodes.length} cluster nodes`,
    rssMb: () => sum((r) => r.rssMb()),
    cpuSeconds: () => sum((r) => r.cpuSeconds()),
    warnings: nodes.flatMap((r) => r.warnings),
    async stop() {
      await Promise.all(nodes.map((r) => r.stop()));
    },
  };
}

/**
 * `instances` spread round-robin over the nodes; pool.clients[i] is on node
 * i % nodes, so the first senders are on different nodes.
 */
async function spreadPool(nodes: BenchRelay[], instances: number): Promise<Pool> {
  const relay = combined(nodes);
  const pool: Pool = {
    relay,
    clients: new Array<RelayClient>(instances),
    remotes: [],
    instances,
    sleepers: [],
    connectMs: 0,
    onBroadcast: null,
    close() {
      for (const c of pool.clients) c?.close();
    },
  };
  const t0 = performance.now();
  await Promise.all(
    nodes.map(async (node, k) => {
      const count = Math.floor(instances / nodes.length) + (k < instances % nodes.length ? 1 : 0);
      // Names bench-<k * 100000 + j>: unique across the cluster, as they must be.
      const positions = Array.from({ length: count }, (_, j) => j * nodes.length + k);
      const from = k * 100_000;
      const group = await connectInstances(node, from, from + count, null, (j, body) => pool.onBroadcast?.(positions[j]!, body));
      group.forEach((c, j) => (pool.clients[positions[j]!] = c));
    }),
  ).catch(async (error) => {
    pool.close();
    throw error;
  });
  pool.connectMs = performance.now() - t0;
  await Promise.all(pool.clients.map((c) => c.ping(1n, 30_000)));
  return pool;
}

export interface ClusterFigures {
  single: PhaseResult;
  spread: PhaseResult;
  nodeRssMb: Array<number | null>;
  natsRssMb: number | null;
  idleAloneMb: number | null;
  idleNodeMb: number | null;
}

export async function runClusterScenario(binary: string | null, nats: string, spec: PhaseSpec, instances: number, warm: (pool: Pool) => Promise<void>): Promise<ClusterFigures> {
  const flags = ["--rate-limit", "0", "--max-instances", "100000"];
  const server = await startNatsServer(nats);
  try {
    // One relay, no cluster: the before-figure.
    const alone = await launchRelay({ binary, flags });
    let single: PhaseResult;
    let idleAloneMb: number | null;
    try {
      await Bun.sleep(1000);
      idleAloneMb = alone.rssMb();
      const pool = await spreadPool([alone], instances);
      try {
        await warm(pool);
        single = await runPhase(pool, spec);
      } finally {
        pool.close();
      }
    } finally {
      await alone.stop();
    }
    const nodes = await Promise.all(["n1", "n2", "n3"].map((name) => launchRelay({ binary, flags: [...flags, "--cluster", server.url, "--node-name", name] })));
    try {
      // Heartbeats every 0.5 s: after 1.5 s every node has heard the others.
      await Bun.sleep(1500);
      const idleNodeMb = nodes[0]!.rssMb();
      const pool = await spreadPool(nodes, instances);
      let spread: PhaseResult;
      try {
        await warm(pool);
        spread = await runPhase(pool, spec);
      } finally {
        pool.close();
      }
      return { single, spread, nodeRssMb: nodes.map((n) => n.rssMb()), natsRssMb: server.rssMb(), idleAloneMb, idleNodeMb };
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  } finally {
    await server.stop();
  }
}
