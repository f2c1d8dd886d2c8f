/**
 * Scenario 7: one session spread over three relay nodes joined by one
 * nats-server (--cluster), beside the same load on one relay; and what the
 * cluster costs in memory. Needs Debian's nats-server; skipped without it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RelayClient } from "../src/client/client.ts";
import { connectInstances, runPhase, type PhaseResult, type PhaseSpec, type Pool } from "./load.ts";
import { launchRelay, rssOf, type BenchRelay } from "./relay-process.ts";

export function natsServerPath(): string | null {
  return (
    Bun.which("nats-server") ??
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => Bun.file(p).size > 0) ??
    null
  );
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
  const proc = Bun.spawn([binary, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
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

/**
 * The geography setup on one machine: one nats-server per region, joined by
 * gateways into a supercluster (JetStream there needs a `cluster {}` block and
 * JetStream on every server).
 */
export async function startSupercluster(
  binary: string,
  regions: string[],
): Promise<{ urls: string[]; rssMb(): number | null; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "sova-bench-gw-"));
  const ports = regions.map(() => ({ client: freePort(), cluster: freePort(), gateway: freePort() }));
  const procs = regions.map((name, i) => {
    const p = ports[i]!;
    const gateways = regions
      .map((other, j) => `{ name: "${other}", url: "nats://127.0.0.1:${ports[j]!.gateway}" }`)
      .join(", ");
    const conf = join(dir, `${name}.conf`);
    Bun.write(
      conf,
      `server_name: "${name}"\nlisten: "127.0.0.1:${p.client}"\njetstream { store_dir: "${join(dir, name)}" }\n` +
        // One server per region: nats-server 2.9 starts JetStream in a supercluster only with
        // routes configured, so the region's cluster routes to itself (dropped as a duplicate).
        `cluster { name: "${name}", listen: "127.0.0.1:${p.cluster}", routes: ["nats://127.0.0.1:${p.cluster}"] }\n` +
        `gateway { name: "${name}", listen: "127.0.0.1:${p.gateway}", gateways: [ ${gateways} ] }\n`,
    );
    return { conf, proc: null as ReturnType<typeof Bun.spawn> | null };
  });
  await Bun.sleep(50);
  const started = procs.map(({ conf }) =>
    Bun.spawn([binary, "-c", conf], { stdin: "ignore", stdout: "ignore", stderr: "pipe" }),
  );
  // Ready once JetStream has a metadata leader across the supercluster (a few seconds after the gateways are up).
  let leader = false;
  const logs = started.map(() => "");
  started.forEach((proc, i) => {
    void (async () => {
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
        logs[i] += new TextDecoder().decode(chunk);
        if (/metadata leader/.test(logs[i]!)) leader = true;
      }
    })();
  });
  const deadline = Date.now() + 20_000;
  while (!leader) {
    if (Date.now() > deadline)
      throw new Error(`the supercluster elected no JetStream leader in 20 s:\n${logs.join("\n")}`);
    await Bun.sleep(100);
  }
  return {
    urls: ports.map((p) => `nats://127.0.0.1:${p.client}`),
    rssMb: () => started.reduce((sum, p) => sum + (rssOf(p.pid) ?? 0), 0),
    async stop() {
      for (const p of started) p.kill("SIGTERM");
      await Promise.all(started.map((p) => p.exited));
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
      const group = await connectInstances(node, from, from + count, null, (j, body) =>
        pool.onBroadcast?.(positions[j]!, body),
      );
      for (const [j, c] of group.entries()) pool.clients[positions[j]!] = c;
    }),
  ).catch(async (error) => {
    pool.close();
    throw error;
  });
  pool.connectMs = performance.now() - t0;
  await Promise.all(pool.clients.map((c) => c.ping(1n, 30_000)));
  return pool;
}

export interface ClusterLoad {
  label: string;
  instances: number;
  spec: PhaseSpec;
}

/** One row per load: the same load on one relay, over 3 nodes on one nats-server, and over gateways. */
export interface ClusterFigures {
  single: PhaseResult[];
  spread: PhaseResult[];
  /** Three nats-servers joined by gateways, one node on each. */
  gateways: PhaseResult[];
  gatewaysNatsRssMb: number | null;
  /** After the loads. */
  nodeRssMb: Array<number | null>;
  natsRssMb: number | null;
  idleAloneMb: number | null;
  idleNodeMb: number | null;
}

type Warm = (pool: Pool, spec: PhaseSpec) => Promise<void>;

async function runLoads(nodes: BenchRelay[], loads: ClusterLoad[], warm: Warm): Promise<PhaseResult[]> {
  const out: PhaseResult[] = [];
  for (const load of loads) {
    const pool = await spreadPool(nodes, load.instances);
    try {
      await warm(pool, load.spec);
      out.push(await runPhase(pool, load.spec));
    } finally {
      pool.close();
    }
  }
  return out;
}

export async function runClusterScenario(
  binary: string | null,
  nats: string,
  loads: ClusterLoad[],
  warm: Warm,
): Promise<ClusterFigures> {
  const flags = ["--rate-limit", "0", "--max-instances", "100000"];
  // One relay, no cluster: the before-figures.
  const alone = await launchRelay({ binary, flags });
  let single: PhaseResult[];
  let idleAloneMb: number | null;
  try {
    await Bun.sleep(1000);
    idleAloneMb = alone.rssMb();
    single = await runLoads([alone], loads, warm);
  } finally {
    await alone.stop();
  }
  const server = await startNatsServer(nats);
  let spread: PhaseResult[];
  let idleNodeMb: number | null;
  let nodeRssMb: Array<number | null>;
  let natsRssMb: number | null;
  try {
    const nodes = await Promise.all(
      ["n1", "n2", "n3"].map((name) =>
        launchRelay({ binary, flags: [...flags, "--cluster", server.url, "--node-name", name] }),
      ),
    );
    try {
      // Heartbeats every 0.5 s: after 1.5 s every node has heard the others.
      await Bun.sleep(1500);
      idleNodeMb = nodes[0]!.rssMb();
      spread = await runLoads(nodes, loads, warm);
      nodeRssMb = nodes.map((n) => n.rssMb());
      natsRssMb = server.rssMb();
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  } finally {
    await server.stop();
  }
  const geo = await runOverGateways(binary, nats, flags, loads, warm);
  return {
    single,
    spread,
    nodeRssMb,
    natsRssMb,
    idleAloneMb,
    idleNodeMb,
    gateways: geo.results,
    gatewaysNatsRssMb: geo.natsRssMb,
  };
}

async function runOverGateways(binary: string | null, nats: string, flags: string[], loads: ClusterLoad[], warm: Warm) {
  const regions = ["nyc", "lon", "tyo"];
  const sc = await startSupercluster(nats, regions);
  try {
    const nodes = await Promise.all(
      regions.map((name, i) =>
        launchRelay({ binary, flags: [...flags, "--cluster", sc.urls[i]!, "--node-name", name] }),
      ),
    );
    try {
      await Bun.sleep(1500);
      const results = await runLoads(nodes, loads, warm);
      return { results, natsRssMb: sc.rssMb() };
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  } finally {
    await sc.stop();
  }
}
