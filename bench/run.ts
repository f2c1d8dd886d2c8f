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
import { DEFAULT_LOAD_CPU_BEFORE, HOP_BEFORE_US, hopUs } from "./hop.ts";
import { FANOUT_BEFORE_MS, fanout } from "./fanout.ts";
import {
  connectPool,
  connectSleepers,
  runPhase,
  type PhaseResult,
  type PhaseSpec,
  type Pool,
  type PoolOptions,
} from "./load.ts";
import { PAIR_TOKEN, runHostile } from "./hostile.ts";
import { type SpectatorReport, type Watching, watching } from "./spectators.ts";
import { firstUpdate, idleCost, quietEditWait } from "./nudges.ts";
import {
  defaultBinary,
  launchRelay,
  launchVia,
  targetRelay,
  type BenchRelay,
  type Transport,
} from "./relay-process.ts";
import { natsServerPath, runClusterScenario } from "./cluster.ts";
import { runResume } from "./resume.ts";
import { type CapacityOptions, capacityRows, runCapacity } from "./capacity.ts";
import type { LimitMode } from "./limit.ts";

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
  const relay = choice.target
    ? targetRelay(choice.target, choice.pid)
    : await launchRelay({ binary: choice.binary, flags });
  try {
    return await fn(relay);
  } finally {
    await relay.stop();
  }
}

async function withPool<T>(
  choice: RelayChoice,
  flags: string[],
  instances: number,
  fn: (pool: Pool) => Promise<T>,
  options: PoolOptions = {},
): Promise<T> {
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
    load:
      `${r.spec.senders}x${r.spec.rate === Infinity ? "max" : r.spec.rate}/s` +
      ` ${r.spec.payload}B ${r.spec.durationS}s`,
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
    "CPU % (relay/generator)":
      `${r.cpuPercent.relay === null ? "n/a" : r.cpuPercent.relay.toFixed(1)}` +
      `/${r.cpuPercent.generator.toFixed(0)}`,
  };
}

function phaseRow(scenario: string, r: PhaseResult, target: string, pass: boolean): Row {
  return { scenario, result: r, figures: figures(r), target, pass };
}

/** `fn` with the spectators of `--spectators` (and their editor) running, when asked for. */
async function watched<T>(
  w: Watching | null,
  relay: BenchRelay,
  fn: () => Promise<T>,
): Promise<[T, SpectatorReport | null]> {
  const stop = await w?.start(relay);
  try {
    return [await fn(), (await stop?.()) ?? null];
  } catch (error) {
    await stop?.();
    throw error;
  }
}

function spectatorFigures(row: Row, w: Watching | null, report: SpectatorReport | null | undefined): void {
  if (!w || !report) return;
  row.figures.spectators =
    w.count === 0
      ? `none (${w.supported ? "--spectators 0" : "this binary has no watching"}); editor ${report.editorSent} edits`
      : `${report.spectators}/${w.count} open, ${report.events} events, ${Math.round(report.bytes / 1024)} KiB,` +
        ` ${report.failed} refused; editor ${report.editorSent} edits`;
}

async function scenarioDefault(choice: RelayChoice, durationS: number, spectators: number | null): Promise<Row> {
  const spec: PhaseSpec = { senders: 20, rate: 1000 / 60, durationS, payload: 256 };
  const w = spectators === null ? null : watching(choice.binary, spectators, null, true);
  const [r, report] = await withPool(choice, w?.flags ?? [], 20, (pool) =>
    watched(w, pool.relay, () => measured(pool, spec)),
  );
  const row = phaseRow("1 default load", r, "no loss, p99 < 2 ms", r.lost === 0 && r.latencyMs.p99 < 2);
  row.figures["relay CPU % before msgpackr"] = DEFAULT_LOAD_CPU_BEFORE;
  spectatorFigures(row, w, report);
  return row;
}

const RAMP_RATES = [100, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2400, 2800, 3200, 4000];

const rampOk = (r: PhaseResult) => r.lost === 0 && r.outOfOrder === 0 && r.latencyMs.p99 < 10;

/** Passing rates, lowest first: steps up until a step loses, reorders or has p99 >= 10 ms. */
export async function ramp(pool: Pool, stepS: number, log: (s: string) => void): Promise<PhaseResult[]> {
  const passed: PhaseResult[] = [];
  for (const rate of RAMP_RATES) {
    const r = await runPhase(pool, { senders: pool.clients.length, rate, durationS: stepS, payload: 256 });
    log(
      `  ramp ${rate}/s per sender: ${Math.round(r.deliveriesPerSec)} deliveries/s,` +
        ` lost ${r.lost}, p99 ${f2(r.latencyMs.p99)} ms ${rampOk(r) ? "ok" : "FAIL"}`,
    );
    if (!rampOk(r)) break;
    passed.push(r);
  }
  return passed;
}

/** The highest passing rate that also passes when held for longer. */
async function sustained(
  pool: Pool,
  passed: PhaseResult[],
  durationS: number,
  log: (s: string) => void,
): Promise<PhaseResult | null> {
  for (const step of [...passed].reverse()) {
    const r = await runPhase(pool, { ...step.spec, durationS });
    log(
      `  sustained ${step.spec.rate}/s per sender for ${durationS} s:` +
        ` ${Math.round(r.deliveriesPerSec)} deliveries/s, lost ${r.lost},` +
        ` p99 ${f2(r.latencyMs.p99)} ms ${rampOk(r) ? "ok" : "FAIL"}`,
    );
    if (rampOk(r)) return r;
  }
  return null;
}

async function scenarioRamp(choice: RelayChoice, stepS: number, log: (s: string) => void): Promise<Row> {
  return withPool(choice, ["--rate-limit", "0"], 20, async (pool) => {
    const r = await sustained(pool, await ramp(pool, stepS, log), Math.max(stepS * 2, 6), log);
    if (!r)
      return { scenario: "2 ramp", figures: {}, target: ">= 250000 deliveries/s, no loss, p99 < 10 ms", pass: false };
    return phaseRow(
      "2 ramp (best rate, sustained)",
      r,
      ">= 250000 deliveries/s, no loss, p99 < 10 ms",
      r.deliveriesPerSec >= 250_000 && rampOk(r),
    );
  });
}

async function scenarioCrowd(choice: RelayChoice, durationS: number, receiverProcesses: number): Promise<Row[]> {
  const flags = ["--max-instances", "5000"];
  // The 995 that only receive live in receiver processes: one process reading 50,000
  // deliveries a second queues them, and that queueing would be counted as the relay's.
  const crowd = await withPool(
    choice,
    flags,
    1000,
    (pool) => measured(pool, { senders: 5, rate: 10, durationS, payload: 256 }),
    { receiverProcesses, local: 5 },
  );
  const connect = await withPool(choice, flags, 5000, async (pool) => ({
    ms: pool.connectMs,
    rss: pool.relay.rssMb(),
  }));
  // One session of 5000 is O(n^2) on the wire: each RegistrationResponse lists every
  // instance already there (2.5 GB in all). Sessions of 100 show the relay's own cost.
  const split = await withRelay(
    choice,
    [...flags, ...Array.from({ length: 50 }, (_, i) => ["--token", `bench-session-token-${i}`]).flat()],
    async (relay) => {
      const pool = await connectPool(relay, 5000, {
        tokens: Array.from({ length: 50 }, (_, i) => `bench-session-token-${i}`),
      });
      const out = { ms: pool.connectMs, rss: relay.rssMb() };
      pool.close();
      return out;
    },
  );
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
  const r = await withPool(choice, [], 20, (pool) =>
    measured(pool, { senders: 2, rate: 2, durationS: Math.max(durationS, 30), payload: 512 * 1024 }),
  );
  return phaseRow("4 big edits", r, "no loss, p99 < 50 ms", r.lost === 0 && r.latencyMs.p99 < 50);
}

async function scenarioOverload(choice: RelayChoice, durationS: number, spectators: number | null): Promise<Row> {
  const w = spectators === null ? null : watching(choice.binary, spectators, null, true);
  return withPool(choice, ["--rate-limit", "0", ...(w?.flags ?? [])], 18, async (pool) => {
    // Warm first, as every measured run here is (the other scenarios' `measured`), then the
    // non-readers join: a cold relay and generator (JIT compiling on the same 2 cores) made the
    // first 250 ms of the run late by 50-250 ms, and those alone set p99 (docs/performance.md).
    await runPhase(pool, { senders: 18, rate: Infinity, durationS: Math.min(2, durationS), payload: 256 });
    await connectSleepers(pool, 2);
    const [r, report] = await watched(w, pool.relay, () =>
      runPhase(pool, { senders: 18, rate: Infinity, durationS, payload: 256 }),
    );
    const sleepersCut = pool.relay.warnings.filter((l) =>
      /Instance 'sleeper-\d+' cut as a slow consumer/.test(l),
    ).length;
    const keptUp = r.instances - r.receiversCut;
    const row = phaseRow(
      "5 overload (18 flat out + 2 never read)",
      r,
      "RSS < 160 MB, readers that never read cut, the rest keep receiving",
      false,
    );
    row.figures["sleepers cut"] = `${sleepersCut}/2`;
    row.figures["kept up"] = `${keptUp}/${r.instances}`;
    row.pass = (r.rssMb.peak ?? 0) < 160 && sleepersCut === 2 && keptUp === r.instances && r.delivered > 0;
    spectatorFigures(row, w, report);
    return row;
  });
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
    {
      scenario: "6 memory: idle",
      figures: { "RSS MB": f1(idle) },
      target: "< 48 MB",
      pass: idle !== null && idle < 48,
    },
    {
      scenario: "6 memory: 1000 idle instances",
      figures: { "RSS MB": f1(crowd) },
      target: "< 80 MB",
      pass: crowd !== null && crowd < 80,
    },
  ];
}

/**
 * What the WebSocket path and the player's tunnel cost: the default load and the
 * ramp's saturation, over plain TCP, over WebSockets straight to /relay, and through
 * one `sova-relay tunnel` process (carrying all 20 instances) to the TLS port and to
 * the WebSocket endpoint. The tunnel shares the machine's cores with relay and generator.
 */
async function scenarioTransport(
  choice: RelayChoice,
  durationS: number,
  transports: Transport[],
  log: (s: string) => void,
): Promise<Row[]> {
  const rows: Row[] = [];
  const base: Record<string, { p50: number; p99: number; dps: number }> = {};
  for (const transport of transports) {
    const relay = await launchVia(transport, { binary: choice.binary, flags: ["--rate-limit", "0"] });
    try {
      const pool = await connectPool(relay, 20);
      try {
        const t0 = relay.tunnelCpuSeconds();
        const w0 = performance.now();
        const normal = await measured(pool, { senders: 20, rate: 1000 / 60, durationS, payload: 256 });
        const tunnelCpu =
          t0 === null ? null : (100 * ((relay.tunnelCpuSeconds() ?? 0) - t0)) / ((performance.now() - w0) / 1000);
        // Saturation as the ramp scenario finds it: the highest rate with no loss and p99 < 10 ms.
        // (Flat out, a tunnel that cannot keep up gets its instances cut as slow consumers.)
        const t1 = relay.tunnelCpuSeconds();
        const w1 = performance.now();
        const passed = await ramp(pool, 1, (line) => log(`  ${transport}:${line}`));
        const flatTunnelCpu =
          t1 === null ? null : (100 * ((relay.tunnelCpuSeconds() ?? 0) - t1)) / ((performance.now() - w1) / 1000);
        const flat = passed.at(-1) ?? null;
        base[transport] = { p50: normal.latencyMs.p50, p99: normal.latencyMs.p99, dps: flat?.deliveriesPerSec ?? 0 };
        const tcp = base.tcp;
        const added =
          tcp && transport !== "tcp"
            ? ` (+${f2(normal.latencyMs.p50 - tcp.p50)} / +${f2(normal.latencyMs.p99 - tcp.p99)} ms over TCP)`
            : "";
        log(
          `  ${transport}: default load p50 ${f2(normal.latencyMs.p50)} ms,` +
            ` p99 ${f2(normal.latencyMs.p99)} ms${added};` +
            ` saturation ${Math.round(flat?.deliveriesPerSec ?? 0)} deliveries/s`,
        );
        const row = phaseRow(`transport: ${transport}, default load`, normal, "no loss", normal.lost === 0);
        if (tunnelCpu !== null) row.figures["tunnel CPU %"] = tunnelCpu.toFixed(0);
        if (added)
          row.figures["added p50/p99 ms"] =
            `+${f2(normal.latencyMs.p50 - tcp!.p50)} / +${f2(normal.latencyMs.p99 - tcp!.p99)}`;
        rows.push(row);
        if (flat === null) {
          rows.push({
            scenario: `transport: ${transport}, saturation`,
            figures: {},
            target: "no loss, p99 < 10 ms at 100/s per sender",
            pass: false,
          });
          continue;
        }
        const sat = phaseRow(
          `transport: ${transport}, saturation (highest ramp step with no loss, p99 < 10 ms)`,
          flat,
          "-",
          true,
        );
        if (flatTunnelCpu !== null) sat.figures["tunnel CPU % (ramp)"] = flatTunnelCpu.toFixed(0);
        if (tcp && transport !== "tcp")
          sat.figures["vs TCP"] = `${((100 * flat.deliveriesPerSec) / tcp.dps).toFixed(0)}%`;
        rows.push(sat);
      } finally {
        pool.close();
      }
    } finally {
      await relay.stop();
    }
  }
  return rows;
}

async function scenarioHostile(choice: RelayChoice, durationS: number, spectators: number | null): Promise<Row> {
  const w = spectators === null ? null : watching(choice.binary, spectators, PAIR_TOKEN, false);
  const h = await runHostile(choice.binary, durationS, w ?? undefined);
  const r = h.pair;
  const row = phaseRow(
    "hostile (a paced pair while every attack runs)",
    r,
    "pair: no loss, p99 < 50 ms; players get in over TCP and WebSocket; RSS < 160 MB",
    false,
  );
  row.figures["relay peak RSS MB"] = f1(h.peakRssMb);
  const why = (t: { why: Record<string, number> }) =>
    Object.entries(t.why)
      .map(([k, v]) => ` ${v}x "${k}"`)
      .join(",");
  row.figures["players joining, TCP (ok/failed, p99 ms)"] =
    `${h.probes.ok}/${h.probes.failed}, ${f2(h.probes.p99Ms)}${why(h.probes)}`;
  row.figures["players joining, WebSocket (ok/failed)"] = `${h.wsProbes.ok}/${h.wsProbes.failed}${why(h.wsProbes)}`;
  row.figures["operator's /events (ok/refused)"] = `${h.operatorPage.ok}/${h.operatorPage.failed}`;
  row.figures["notices to one member of the attacked session"] = String(h.notices);
  row.figures["late joiner at 3.2 Mbit/s (history updates, cut)"] =
    `${h.slowJoiner.history}, ${h.slowJoiner.cut ? "cut" : "not cut"}`;
  row.figures["relay log lines"] = String(h.logLines);
  row.figures["attack rounds"] = Object.entries(h.attacks)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  row.figures["cut (why)"] = Object.entries(h.cut)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  row.figures["refused (why)"] = Object.entries(h.refused)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  row.pass =
    r.lost === 0 &&
    r.latencyMs.p99 < 50 &&
    h.probes.failed === 0 &&
    h.probes.ok > 0 &&
    h.wsProbes.failed === 0 &&
    h.wsProbes.ok > 0 &&
    (h.peakRssMb ?? Infinity) < 160;
  spectatorFigures(row, w, h.spectators);
  return row;
}

async function scenarioNudges(choice: RelayChoice, durationS: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const instances of [20, 1000]) {
    const off = await idleCost(choice.binary, instances, 0, Math.min(durationS, 5));
    const on = await idleCost(choice.binary, instances, 40, Math.min(durationS, 5));
    rows.push({
      scenario: `nudges at rest: ${instances} idle instances`,
      figures: {
        "relay CPU % (off/on)": `${f1(off.cpuPercent)}/${f1(on.cpuPercent)}`,
        "bytes/s sent (off/on)": `${Math.round(off.bytesPerSec)}/${Math.round(on.bytesPerSec)}`,
        "frames/s sent (off/on)": `${Math.round(off.framesPerSec)}/${Math.round(on.framesPerSec)}`,
      },
      target: "measured (price of the default 40 ms)",
      pass: true,
    });
  }
  const spec: PhaseSpec = { senders: 20, rate: 1000 / 60, durationS, payload: 256 };
  const loadOff = await withPool(choice, ["--nudge-interval", "0"], 20, (pool) => measured(pool, spec));
  const loadOn = await withPool(choice, ["--nudge-interval", "40"], 20, (pool) => measured(pool, spec));
  rows.push({
    scenario: "nudges under the default load",
    figures: {
      "p50 ms (off/on)": `${f2(loadOff.latencyMs.p50)}/${f2(loadOn.latencyMs.p50)}`,
      "p99 ms (off/on)": `${f2(loadOff.latencyMs.p99)}/${f2(loadOn.latencyMs.p99)}`,
      "lost (off/on)": `${loadOff.lost}/${loadOn.lost}`,
    },
    target: "nudges cost nothing while traffic flows",
    pass: loadOn.lost === 0,
  });
  const waits = await quietEditWait(choice.binary, 40, 100);
  rows.push({
    scenario: "nudges: an edit in a quiet duo (today's client's locking), nudges every 40 ms",
    figures: { "p50 ms": f2(waits.p50), "p99 ms": f2(waits.p99), "max ms": f2(waits.max) },
    target: "p99 well under 100 ms",
    pass: waits.p99 < 100,
  });
  const firstOff = await firstUpdate(choice.binary, 0, 20);
  const firstOn = await firstUpdate(choice.binary, 40, 20);
  rows.push({
    scenario: "nudges: first update of a connection (prefix and body in two writes, Nagle on)",
    figures: {
      "p50 ms (lone-header Pong off/on)": `${f2(firstOff.p50)}/${f2(firstOn.p50)}`,
      "p99 ms (off/on)": `${f2(firstOff.p99)}/${f2(firstOn.p99)}`,
    },
    target: "no 40 ms delayed-ACK wait",
    pass: firstOn.p99 < 20,
  });
  return rows;
}

async function scenarioCluster(choice: RelayChoice, durationS: number, log: (s: string) => void): Promise<Row[]> {
  const nats = natsServerPath();
  if (!nats || choice.target) {
    const why = choice.target
      ? "needs relays the bench starts"
      : "nats-server is not installed: apt-get install nats-server";
    log(`  cluster: skipped (${why})`);
    return [];
  }
  const loads = [
    { label: "30 instances, 6 sending 100/s", instances: 30, spec: { senders: 6, rate: 100, durationS, payload: 256 } },
    {
      label: "21 instances, all sending 400/s",
      instances: 21,
      spec: { senders: 21, rate: 400, durationS: Math.min(durationS, 5), payload: 256 },
    },
  ];
  const c = await runClusterScenario(
    choice.binary,
    nats,
    loads,
    async (pool, spec) => void (await runPhase(pool, { ...spec, durationS: Math.min(2, spec.durationS) })),
  );
  const rows: Row[] = [];
  loads.forEach((load, i) => {
    rows.push(phaseRow(`cluster, ${load.label}: one relay (before)`, c.single[i]!, "no loss", c.single[i]!.lost === 0));
    const spread = phaseRow(
      `cluster, ${load.label}: over 3 nodes on one nats-server`,
      c.spread[i]!,
      "no loss, p99 < 10 ms",
      c.spread[i]!.lost === 0 && c.spread[i]!.latencyMs.p99 < 10,
    );
    rows.push(spread);
    const geo = phaseRow(
      `cluster, ${load.label}: over 3 nodes, each on its own nats-server, joined by gateways`,
      c.gateways[i]!,
      "no loss",
      c.gateways[i]!.lost === 0,
    );
    rows.push(geo);
  });
  return [
    ...rows,
    {
      scenario: "cluster: memory",
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

/** Resumption (docs/resume.md): a player's path cut for 1, 5 and 20 s under a paced session. */
async function scenarioResume(choice: RelayChoice, log: (s: string) => void): Promise<Row[]> {
  const r = await runResume(choice.binary, [1, 5, 20], [8, 3, 2], log);
  const lost = r.aliceToBob.lost + r.bobToAlice.lost;
  const repeated = r.aliceToBob.repeated + r.bobToAlice.repeated + r.aliceToBob.outOfOrder + r.bobToAlice.outOfOrder;
  const restore: Record<string, string> = {};
  for (const g of r.gaps) restore[`gap ${g.gapS} s: restored ms`] = g.restoreMs.join(", ");
  return [
    {
      scenario: "resume: edits across gaps of 1, 5 and 20 s (two players, 10 edits/s each)",
      figures: {
        "alice->bob sent/lost/repeated/out of order": `${r.aliceToBob.sent}/${r.aliceToBob.lost}/${r.aliceToBob.repeated}/${r.aliceToBob.outOfOrder}`,
        "bob->alice sent/lost/repeated/out of order": `${r.bobToAlice.sent}/${r.bobToAlice.lost}/${r.bobToAlice.repeated}/${r.bobToAlice.outOfOrder}`,
        resumptions: r.resumptions,
        "dropped by the rate limit": r.rateLimited,
      },
      target: "0 lost, 0 repeated",
      pass: lost === 0 && repeated === 0,
    },
    {
      scenario: "resume: time from the path back to the session restored",
      figures: { ...restore, "p99 ms": f1(r.restoreP99Ms) },
      target: "p99 < 1 s",
      pass: r.restoreP99Ms < 1000,
    },
    {
      scenario: "resume: held for a parked player (sampled near the end of each gap)",
      figures: {
        "relay parked instances": r.relayParkedInstances,
        "relay resumption log KB (max)": f1(r.relayResumeBufferBytes / 1024),
        "relay RSS MB (before/during)": `${f1(r.relayRssMb.before)}/${f1(r.relayRssMb.duringGap)}`,
        "tunnel held edits KB (max)": f1(r.tunnelHeldBytesMax / 1024),
        "tunnel RSS MB (before/during)": `${f1(r.tunnelRssMb.before)}/${f1(r.tunnelRssMb.duringGap)}`,
      },
      target: "measured",
      pass: true,
    },
  ];
}

/** Half a core and 256 MB (issue 25): see bench/capacity.ts. */
async function scenarioCapacity(choice: RelayChoice, durationS: number, options: CapacityOptions): Promise<Row[]> {
  if (choice.target) {
    console.log("  capacity: skipped (needs a relay the bench starts, to limit it)");
    return [];
  }
  try {
    return capacityRows(await runCapacity(choice.binary, durationS, options), phaseRow);
  } catch (error) {
    console.log(`  capacity: SKIPPED: ${(error as Error).message}`);
    return [];
  }
}

function printTable(rows: Row[]): void {
  for (const row of rows) {
    console.log(`\n${row.pass ? "PASS" : "FAIL"}  ${row.scenario}  (target: ${row.target})`);
    for (const [k, v] of Object.entries(row.figures)) console.log(`  ${k.padEnd(28)} ${v}`);
  }
}

/** The codec's share of a relay hop, in this process (bench/hop.ts), beside the hand-written codec's. */
function scenarioHop(): Row {
  const figures: Record<string, string> = {};
  let pass = true;
  for (const payload of [256, 524288]) {
    const us = hopUs(payload);
    figures[`${payload} B: µs (before)`] = `${f2(us)} (${f2(HOP_BEFORE_US[payload]!)})`;
    pass &&= us <= HOP_BEFORE_US[payload]! * 1.2; // 20%: what other processes on 2 shared cores add
  }
  return {
    scenario: "hop: decode StateUpdate + encode StateBroadcast",
    figures,
    target: "not slower than before",
    pass,
  };
}

/** The relay's own work for a beat of a big ensemble, in this process, beside the same beat with no rules (bench/fanout.ts). */
async function scenarioFanout(): Promise<Row> {
  const figures: Record<string, string> = {};
  let pass = true;
  for (const k of [100, 200]) {
    const r = await fanout(k, 40);
    figures[`k=${k}: ms per beat (before), no rules`] = `${f2(r.relayMs)} (${FANOUT_BEFORE_MS[k]}), ${f2(r.noRulesMs)}`;
    pass &&= r.bytesPerMember === r.expectedBytesPerMember && (k < 200 || r.relayMs <= 1.5 * r.noRulesMs);
  }
  return {
    scenario: "fanout: the relay's own work for one beat, k in one session, no sockets",
    figures,
    target: "every member gets the k - 1 others' broadcasts; k = 200 within 1.5x of the same beat with no rules",
    pass,
  };
}

/** The capacity scenario's flags, checked before anything runs: a mistake stops the bench with exit 2. */
function capacityFlags(args: { limit?: string; "relay-env": string; "generator-processes"?: string }) {
  const mode = args.limit as LimitMode | undefined;
  if (mode !== undefined && !["v1", "v2", "podman", "none"].includes(mode)) {
    console.error(`bench: --limit must be v1, v2, podman or none, not '${mode}'`);
    process.exit(2);
  }
  if (!["image", "bare"].includes(args["relay-env"])) {
    console.error(`bench: --relay-env must be image or bare, not '${args["relay-env"]}'`);
    process.exit(2);
  }
  const processes = args["generator-processes"];
  if (processes !== undefined && !/^[1-9][0-9]?$/.test(processes)) {
    console.error(`bench: --generator-processes must be a whole number from 1 to 99, not '${processes}'`);
    process.exit(2);
  }
  return { mode, processes: processes === undefined ? undefined : Number(processes) };
}

const main = defineCommand({
  meta: { name: "bench", description: "Load the relay and report throughput, latency, loss and memory" },
  args: {
    scenario: {
      type: "string",
      description:
        "all, default, ramp, crowd, big, overload, memory, hostile, nudges, transport, hop, fanout, cluster, resume, capacity",
      default: "all",
    },
    transport: {
      type: "string",
      description:
        "transport scenario: tcp, ws (straight to /relay)," +
        " tunnel-tls, tunnel-ws, or all (TCP first, the others beside it)",
      default: "all",
    },
    binary: { type: "string", description: "Relay binary (default: dist/sova-relay)" },
    source: { type: "boolean", description: "Run the relay from source instead of the binary" },
    target: { type: "string", description: "HOST:PORT of a running relay" },
    pid: { type: "string", description: "PID of that relay, to read its memory" },
    instances: { type: "string", description: "Custom run: instances" },
    senders: { type: "string", description: "Custom run: how many send", default: "1" },
    rate: { type: "string", description: "Custom run: updates per second per sender (max: flat out)", default: "10" },
    duration: { type: "string", description: "Seconds per phase", default: "10" },
    payload: { type: "string", description: "Custom run: bytes per update", default: "256" },
    ramp: {
      type: "boolean",
      description: "Custom run: ramp the rate up to the highest zero-loss rate with p99 < 10 ms",
    },
    "receiver-processes": {
      type: "string",
      description:
        "Processes the crowd's (and a custom run's) receiving instances are spread over;" +
        " 0: all in the generator (best on 2 cores)",
      default: "0",
    },
    limit: {
      type: "string",
      description:
        "capacity: how to hold the relay to half a core and 256 MB: v1, v2 or podman (default: the first that works)",
    },
    loads: {
      type: "string",
      description: "capacity: which loads, by instances (50,100,200,1000 = 250 sessions of 4; default: all)",
    },
    "relay-env": {
      type: "string",
      description: "capacity: the relay's allocator settings: image (those Dockerfile.prebuilt sets) or bare (none)",
      default: "image",
    },
    "relay-flags": { type: "string", description: "capacity: more relay flags, space-separated" },
    warmup: { type: "string", description: "capacity: seconds of load before each measured run (default 30)" },
    "generator-processes": {
      type: "string",
      description: "capacity: processes the load generator's instances are spread over, its own included (default 1)",
    },
    "count-writes": {
      type: "boolean",
      description: "capacity: count the relay's write, read and poll syscalls with perf (costs the relay some CPU)",
    },
    "one-core": {
      type: "boolean",
      description:
        "capacity: the relay on the first core alone, as on a VPS of one virtual CPU; the generator on the others (taskset)",
    },
    "trace-beats": {
      type: "boolean",
      description:
        "capacity: where a beat's time goes (generator's sends, relay's writes, preemption, generator's reads), traced with perf for 6 s",
    },
    json: { type: "boolean", description: "JSON output" },
    spectators: {
      type: "string",
      description:
        "default, overload, hostile: N spectator pages and an editor on the session under load" +
        " (0: the editor alone; a binary without watching gets the editor alone)",
    },
  },
  async run({ args }) {
    const choice: RelayChoice = {
      binary: args.source ? null : (args.binary ?? defaultBinary()),
      target: args.target,
      pid: args.pid ? Number(args.pid) : undefined,
    };
    const capacity = capacityFlags(args);
    const durationS = Number(args.duration);
    const receiverProcesses = Number(args["receiver-processes"]);
    const log = (s: string) => (args.json ? process.stderr.write(`${s}\n`) : console.log(s));
    log(
      `relay: ${choice.target ? `running at ${choice.target}` : (choice.binary ?? "source (bun src/main.ts)")};` +
        ` machine: ${navigator.hardwareConcurrency} cores`,
    );
    const lateness = await wakeupLateness();
    log(
      `machine: a 1 ms sleep wakes late by p50 ${f2(lateness.p50Ms)} ms, p99 ${f2(lateness.p99Ms)} ms,` +
        ` p99.9 ${f2(lateness.p999Ms)} ms (scheduling noise every delivery carries)`,
    );
    const rows: Row[] = [];
    if (args.instances) {
      const flags = ["--rate-limit", "0", "--max-instances", "100000"];
      const spec: PhaseSpec = {
        senders: Number(args.senders),
        rate: args.rate === "max" ? Infinity : Number(args.rate),
        durationS,
        payload: Number(args.payload),
      };
      const poolOptions = { receiverProcesses, local: Number(args.senders) };
      await withPool(
        choice,
        flags,
        Number(args.instances),
        async (pool) => {
          if (args.ramp) {
            const best = await sustained(pool, await ramp(pool, Math.min(durationS, 3), log), durationS, log);
            if (best) rows.push(phaseRow("ramp: best sustained", best, "no loss, p99 < 10 ms", true));
          } else rows.push(phaseRow("custom", await measured(pool, spec), "-", true));
        },
        poolOptions,
      );
    } else {
      const want = (name: string) => args.scenario === "all" || args.scenario === name;
      const spectators = args.spectators === undefined || choice.target ? null : Number(args.spectators);
      if (want("default")) rows.push(await scenarioDefault(choice, durationS, spectators));
      if (want("ramp")) rows.push(await scenarioRamp(choice, Math.min(durationS, 3), log));
      if (want("crowd")) rows.push(...(await scenarioCrowd(choice, durationS, receiverProcesses)));
      if (want("big")) rows.push(await scenarioBig(choice, durationS));
      if (want("overload")) rows.push(await scenarioOverload(choice, Math.min(durationS, 5), spectators));
      if (want("memory")) rows.push(...(await scenarioMemory(choice)));
      if (want("hostile") && !choice.target) rows.push(await scenarioHostile(choice, durationS, spectators));
      if (want("nudges") && !choice.target) rows.push(...(await scenarioNudges(choice, durationS)));
      if (want("transport")) {
        const all: Transport[] = ["tcp", "ws", "tunnel-tls", "tunnel-ws"];
        const picked = args.transport === "all" ? all : all.filter((t) => t === args.transport || t === "tcp");
        rows.push(...(await scenarioTransport(choice, Math.min(durationS, 5), picked, log)));
      }
      if (want("hop")) rows.push(scenarioHop());
      if (want("fanout")) rows.push(await scenarioFanout());
      if (want("cluster")) rows.push(...(await scenarioCluster(choice, durationS, log)));
      if (want("resume") && !choice.target) rows.push(...(await scenarioResume(choice, log)));
      if (want("capacity")) {
        rows.push(
          ...(await scenarioCapacity(choice, durationS, {
            mode: capacity.mode,
            only: args.loads?.split(",").map(Number),
            countWrites: args["count-writes"] === true,
            relayEnv: args["relay-env"] as "image" | "bare",
            relayFlags: args["relay-flags"]?.split(" ").filter(Boolean),
            warmupS: args.warmup === undefined ? undefined : Number(args.warmup),
            generatorProcesses: capacity.processes,
            traceBeats: args["trace-beats"] === true,
            oneCore: args["one-core"] === true,
          })),
        );
      }
    }
    if (args.json)
      console.log(
        JSON.stringify(
          {
            machine: { cores: navigator.hardwareConcurrency, wakeupLateMs: lateness },
            rows: rows.map(({ result: _r, ...row }) => row),
          },
          null,
          2,
        ),
      );
    else printTable(rows);
  },
});

void runMain(main);
