/**
 * `bun run bench`: the relay under load, printed as figures. See bench/README.md.
 *
 *   bun run bench                          every scenario, against dist/sova-relay
 *   bun run bench -- --scenario ramp       one scenario
 *   bun run bench -- --instances 50 --senders 5 --rate 20 --duration 10 --payload 256
 *   bun run bench -- --ramp                find the highest zero-loss rate with p99 < 10 ms
 *   --binary PATH | --source | --target HOST:PORT [--pid PID]    which relay
 *   --json                                 machine-readable output
 */
import { defineCommand, runMain } from "citty";
import { fanoutFloor, wakeupLateness } from "./floor.ts";
import { connectPool, runPhase, type PhaseResult, type PhaseSpec, type Pool, type PoolOptions } from "./load.ts";
import { defaultBinary, launchRelay, targetRelay, type BenchRelay } from "./relay-process.ts";
import { natsServerPath, runClusterScenario } from "./cluster.ts";

interface Row {
  scenario: string;
  result?: PhaseResult;
  figures: Record<string, string | number>;
  target: string;
  pass: boolean;
}

interface RelayChoice {
  binary: string | null;
  target?: string;
  pid?: number;
}

async function withRelay<T>(choice: RelayChoice, flags: string[], fn: (relay: BenchRelay) => Promise<T>): Promise<T> {
  const relay = choice.target ? targetRelay(choice.target, choice.pid) : await launchRelay({ binary: choice.binary, flags });
  try {
    return await fn(relay);
  } finally {
    await relay.stop();
  }
}

async function withPool<T>(choice: RelayChoice, flags: string[], instances: number, fn: (pool: Pool) => Promise<T>, options: PoolOptions = {}): Promise<T> {
  return withRelay(choice, flags, async (relay) => {
    const pool = await connectPool(relay, instances, options);
    try {
      return await fn(pool);
    } finally {
      pool.close();
    }
  });
}

/** One short unmeasured run first, so JIT warm-up in relay and generator is not in the figures. */
async function measured(pool: Pool, spec: PhaseSpec): Promise<PhaseResult> {
  await runPhase(pool, { ...spec, durationS: Math.min(2, spec.durationS) });
  return runPhase(pool, spec);
}

const f1 = (n: number | null) => (n === null ? "n/a" : n.toFixed(1));
const f2 = (n: number) => n.toFixed(2);

function figures(r: PhaseResult): Record<string, string | number> {
  return {
    instances: r.instances,
    load: `${r.spec.senders}x${r.spec.rate === Infinity ? "max" : r.spec.rate}/s ${r.spec.payload}B ${r.spec.durationS}s`,
    sent: r.sent,
    expected: r.expected,
    delivered: r.delivered,
    lost: r.lost,
    ooo: r.outOfOrder,
    "deliv/s": Math.round(r.deliveriesPerSec),
    "p50 ms": f2(r.latencyMs.p50),
    "p90 ms": f2(r.latencyMs.p90),
    "p99 ms": f2(r.latencyMs.p99),
    "p99.9 ms": f2(r.latencyMs.p999),
    "max ms": f2(r.latencyMs.max),
    "RSS MB (before/peak/after)": `${f1(r.rssMb.before)}/${f1(r.rssMb.peak)}/${f1(r.rssMb.after)}`,
    "CPU % (relay/generator)": `${r.cpuPercent.relay === null ? "n/a" : r.cpuPercent.relay.toFixed(0)}/${r.cpuPercent.generator.toFixed(0)}`,
  };
}

function phaseRow(scenario: string, r: PhaseResult, target: string, pass: boolean): Row {
  return { scenario, result: r, figures: figures(r), target, pass };
}

async function scenarioDefault(choice: RelayChoice, durationS: number): Promise<Row> {
  const spec: PhaseSpec = { senders: 20, rate: 1000 / 60, durationS, payload: 256 };
  const r = await withPool(choice, [], 20, (pool) => measured(pool, spec));
  return phaseRow("1 default load", r, "no loss, p99 < 2 ms", r.lost === 0 && r.latencyMs.p99 < 2);
}

const RAMP_RATES = [100, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2400, 2800, 3200, 4000];

const rampOk = (r: PhaseResult) => r.lost === 0 && r.outOfOrder === 0 && r.latencyMs.p99 < 10;

/** Passing rates, lowest first: steps up until a step loses, reorders or has p99 >= 10 ms. */
export async function ramp(pool: Pool, stepS: number, log: (s: string) => void): Promise<PhaseResult[]> {
  const passed: PhaseResult[] = [];
  for (const rate of RAMP_RATES) {
    const r = await runPhase(pool, { senders: pool.clients.length, rate, durationS: stepS, payload: 256 });
    log(`  ramp ${rate}/s per sender: ${Math.round(r.deliveriesPerSec)} deliveries/s, lost ${r.lost}, p99 ${f2(r.latencyMs.p99)} ms ${rampOk(r) ? "ok" : "FAIL"}`);
    if (!rampOk(r)) break;
    passed.push(r);
  }
  return passed;
}

/** The highest passing rate that also passes when held for longer. */
async function sustained(pool: Pool, passed: PhaseResult[], durationS: number, log: (s: string) => void): Promise<PhaseResult | null> {
  for (const step of [...passed].reverse()) {
    const r = await runPhase(pool, { ...step.spec, durationS });
    log(`  sustained ${step.spec.rate}/s per sender for ${durationS} s: ${Math.round(r.deliveriesPerSec)} deliveries/s, lost ${r.lost}, p99 ${f2(r.latencyMs.p99)} ms ${rampOk(r) ? "ok" : "FAIL"}`);
    if (rampOk(r)) return r;
  }
  return null;
}

async function scenarioRamp(choice: RelayChoice, stepS: number, log: (s: string) => void): Promise<Row> {
  return withPool(choice, ["--rate-limit", "0"], 20, async (pool) => {
    const r = await sustained(pool, await ramp(pool, stepS, log), Math.max(stepS * 2, 6), log);
    if (!r) return { scenario: "2 ramp", figures: {}, target: ">= 250000 deliveries/s, no loss, p99 < 10 ms", pass: false };
    return phaseRow("2 ramp (best rate, sustained)", r, ">= 250000 deliveries/s, no loss, p99 < 10 ms", r.deliveriesPerSec >= 250_000 && rampOk(r));
  });
}

async function scenarioCrowd(choice: RelayChoice, durationS: number, receiverProcesses: number): Promise<Row[]> {
  const flags = ["--max-instances", "5000"];
  // The 995 that only receive live in receiver processes: one process reading 50,000
  // deliveries a second queues them, and that queueing would be counted as the relay's.
  const crowd = await withPool(choice, flags, 1000, (pool) => measured(pool, { senders: 5, rate: 10, durationS, payload: 256 }), { receiverProcesses, local: 5 });
  const connect = await withPool(choice, flags, 5000, async (pool) => ({ ms: pool.connectMs, rss: pool.relay.rssMb() }));
  // One session of 5000 is O(n^2) on the wire: each RegistrationResponse lists every
  // instance already there (2.5 GB in all). Sessions of 100 show the relay's own cost.
  const split = await withRelay(choice, [...flags, ...Array.from({ length: 50 }, (_, i) => ["--token", `bench-session-${i}`]).flat()], async (relay) => {
    const pool = await connectPool(relay, 5000, { tokens: Array.from({ length: 50 }, (_, i) => `bench-session-${i}`) });
    const out = { ms: pool.connectMs, rss: relay.rssMb() };
    pool.close();
    return out;
  });
  // What this machine allows at best: a bare program's 999 writes, no relay at all.
  const floor = await fanoutFloor(999);
  const crowdRow = phaseRow("3 crowd", crowd, "no loss, p99 < 10 ms", crowd.lost === 0 && crowd.latencyMs.p99 < 10);
  crowdRow.figures["floor ms (999 bare writes)"] = `median ${f2(floor.medianMs)}, p90 ${f2(floor.p90Ms)}`;
  return [
    crowdRow,
    {
      scenario: "3 crowd: 5000 connect+register",
      figures: { instances: 5000, "connect+register s": f2(connect.ms / 1000), "RSS MB": f1(connect.rss) },
      target: "< 10 s",
      pass: connect.ms < 10_000,
    },
    {
      scenario: "3 crowd: 5000 connect+register, 50 sessions of 100",
      figures: { instances: 5000, "connect+register s": f2(split.ms / 1000), "RSS MB": f1(split.rss) },
      target: "< 10 s",
      pass: split.ms < 10_000,
    },
  ];
}

async function scenarioBig(choice: RelayChoice, durationS: number): Promise<Row> {
  // Four updates a second: at least 30 s, or p99 would be the slowest one or two updates.
  const r = await withPool(choice, [], 20, (pool) => measured(pool, { senders: 2, rate: 2, durationS: Math.max(durationS, 30), payload: 512 * 1024 }));
  return phaseRow("4 big edits", r, "no loss, p99 < 50 ms", r.lost === 0 && r.latencyMs.p99 < 50);
}

async function scenarioOverload(choice: RelayChoice, durationS: number): Promise<Row> {
  return withPool(
    choice,
    ["--rate-limit", "0"],
    18,
    async (pool) => {
      const r = await runPhase(pool, { senders: 18, rate: Infinity, durationS, payload: 256 });
      const sleepersCut = pool.relay.warnings.filter((l) => /Instance 'sleeper-\d+' cut as a slow consumer/.test(l)).length;
      const keptUp = r.instances - r.receiversCut;
      const row = phaseRow("5 overload (18 flat out + 2 never read)", r, "RSS < 160 MB, readers that never read cut, the rest keep receiving", false);
      row.figures["sleepers cut"] = `${sleepersCut}/2`;
      row.figures["kept up"] = `${keptUp}/${r.instances}`;
      row.pass = (r.rssMb.peak ?? 0) < 160 && sleepersCut === 2 && keptUp === r.instances && r.delivered > 0;
      return row;
    },
    { sleepers: 2 },
  );
}

async function scenarioMemory(choice: RelayChoice): Promise<Row[]> {
  const idle = await withRelay(choice, [], async (relay) => {
    await Bun.sleep(1000);
    return relay.rssMb();
  });
  const crowd = await withPool(choice, ["--max-instances", "5000"], 1000, async (pool) => {
    await Bun.sleep(1000);
    return pool.relay.rssMb();
  });
  return [
    { scenario: "6 memory: idle", figures: { "RSS MB": f1(idle) }, target: "< 48 MB", pass: idle !== null && idle < 48 },
    { scenario: "6 memory: 1000 idle instances", figures: { "RSS MB": f1(crowd) }, target: "< 80 MB", pass: crowd !== null && crowd < 80 },
  ];
}

async function scenarioCluster(choice: RelayChoice, durationS: number, log: (s: string) => void): Promise<Row[]> {
  const nats = natsServerPath();
  if (!nats || choice.target) {
    log(`  7 cluster: skipped (${choice.target ? "needs relays the bench starts" : "nats-server is not installed: apt-get install nats-server"})`);
    return [];
  }
  const loads = [
    { label: "30 instances, 6 sending 100/s", instances: 30, spec: { senders: 6, rate: 100, durationS, payload: 256 } },
    { label: "21 instances, all sending 400/s", instances: 21, spec: { senders: 21, rate: 400, durationS: Math.min(durationS, 5), payload: 256 } },
  ];
  const c = await runClusterScenario(choice.binary, nats, loads, async (pool, spec) => void (await runPhase(pool, { ...spec, durationS: Math.min(2, spec.durationS) })));
  const rows: Row[] = [];
  loads.forEach((load, i) => {
    rows.push(phaseRow(`7 cluster, ${load.label}: one relay (before)`, c.single[i]!, "no loss", c.single[i]!.lost === 0));
    const spread = phaseRow(`7 cluster, ${load.label}: over 3 nodes on one nats-server`, c.spread[i]!, "no loss, p99 < 10 ms", c.spread[i]!.lost === 0 && c.spread[i]!.latencyMs.p99 < 10);
    rows.push(spread);
    const geo = phaseRow(`7 cluster, ${load.label}: over 3 nodes, each on its own nats-server, joined by gateways`, c.gateways[i]!, "no loss", c.gateways[i]!.lost === 0);
    rows.push(geo);
  });
  return [
    ...rows,
    {
      scenario: "7 cluster: memory",
      figures: {
        "idle relay alone MB": f1(c.idleAloneMb),
        "idle cluster node MB": f1(c.idleNodeMb),
        "nodes after the loads MB": c.nodeRssMb.map(f1).join(" / "),
        "nats-server after the loads MB": f1(c.natsRssMb),
        "3 nats-servers joined by gateways MB": f1(c.gatewaysNatsRssMb),
      },
      target: "idle node < 64 MB",
      pass: c.idleNodeMb !== null && c.idleNodeMb < 64,
    },
  ];
}

function printTable(rows: Row[]): void {
  for (const row of rows) {
    console.log(`\n${row.pass ? "PASS" : "FAIL"}  ${row.scenario}  (target: ${row.target})`);
    for (const [k, v] of Object.entries(row.figures)) console.log(`  ${k.padEnd(28)} ${v}`);
  }
}

const main = defineCommand({
  meta: { name: "bench", description: "Load the relay and report throughput, latency, loss and memory" },
  args: {
    scenario: { type: "string", description: "all, default, ramp, crowd, big, overload, memory, cluster", default: "all" },
    binary: { type: "string", description: "Relay binary (default: dist/sova-relay)" },
    source: { type: "boolean", description: "Run the relay from source instead of the binary" },
    target: { type: "string", description: "HOST:PORT of a running relay" },
    pid: { type: "string", description: "PID of that relay, to read its memory" },
    instances: { type: "string", description: "Custom run: instances" },
    senders: { type: "string", description: "Custom run: how many send", default: "1" },
    rate: { type: "string", description: "Custom run: updates per second per sender (max: flat out)", default: "10" },
    duration: { type: "string", description: "Seconds per phase", default: "10" },
    payload: { type: "string", description: "Custom run: bytes per update", default: "256" },
    ramp: { type: "boolean", description: "Custom run: ramp the rate up to the highest zero-loss rate with p99 < 10 ms" },
    "receiver-processes": { type: "string", description: "Processes the crowd's (and a custom run's) receiving instances are spread over; 0: all in the generator (best on 2 cores)", default: "0" },
    json: { type: "boolean", description: "JSON output" },
  },
  async run({ args }) {
    const choice: RelayChoice = {
      binary: args.source ? null : (args.binary ?? defaultBinary()),
      target: args.target,
      pid: args.pid ? Number(args.pid) : undefined,
    };
    const durationS = Number(args.duration);
    const receiverProcesses = Number(args["receiver-processes"]);
    const log = (s: string) => (args.json ? process.stderr.write(`${s}\n`) : console.log(s));
    log(`relay: ${choice.target ? `running at ${choice.target}` : (choice.binary ?? "source (bun src/main.ts)")}; machine: ${navigator.hardwareConcurrency} cores`);
    const lateness = await wakeupLateness();
    log(`machine: a 1 ms sleep wakes late by p50 ${f2(lateness.p50Ms)} ms, p99 ${f2(lateness.p99Ms)} ms, p99.9 ${f2(lateness.p999Ms)} ms (scheduling noise every delivery carries)`);
    const rows: Row[] = [];
    if (args.instances) {
      const flags = ["--rate-limit", "0", "--max-instances", "100000"];
      const spec: PhaseSpec = { senders: Number(args.senders), rate: args.rate === "max" ? Infinity : Number(args.rate), durationS, payload: Number(args.payload) };
      const poolOptions = { receiverProcesses, local: Number(args.senders) };
      await withPool(choice, flags, Number(args.instances), async (pool) => {
        if (args.ramp) {
          const best = await sustained(pool, await ramp(pool, Math.min(durationS, 3), log), durationS, log);
          if (best) rows.push(phaseRow("ramp: best sustained", best, "no loss, p99 < 10 ms", true));
        } else rows.push(phaseRow("custom", await measured(pool, spec), "-", true));
      }, poolOptions);
    } else {
      const want = (name: string) => args.scenario === "all" || args.scenario === name;
      if (want("default")) rows.push(await scenarioDefault(choice, durationS));
      if (want("ramp")) rows.push(await scenarioRamp(choice, Math.min(durationS, 3), log));
      if (want("crowd")) rows.push(...(await scenarioCrowd(choice, durationS, receiverProcesses)));
      if (want("big")) rows.push(await scenarioBig(choice, durationS));
      if (want("overload")) rows.push(await scenarioOverload(choice, Math.min(durationS, 5)));
      if (want("memory")) rows.push(...(await scenarioMemory(choice)));
      if (want("cluster")) rows.push(...(await scenarioCluster(choice, durationS, log)));
    }
    if (args.json) console.log(JSON.stringify({ machine: { cores: navigator.hardwareConcurrency, wakeupLateMs: lateness }, rows: rows.map(({ result: _r, ...row }) => row) }, null, 2));
    else printTable(rows);
  },
});

void runMain(main);
