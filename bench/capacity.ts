/**
 * The `capacity` scenario (issue 25): the compiled relay as hosts run it, under half
 * a core and 256 MB (bench/limit.ts), the load generator outside the limit. One
 * session of k = 50, 100, 200 instances, every one editing twice a second, all in
 * phase (an ensemble on one beat), 256 B; then 250 sessions of 4, each instance
 * editing once a second (each session in phase, sessions spread over the second).
 *
 * For each load: deliveries/s, loss, p50/p99, relay CPU per delivery (the cgroup's
 * counter over the measured run), how often the quota throttled it, peak RSS; and the
 * floor, measured in the same run and the same limit by a bare Bun program
 * (bench/write-floor.ts) giving the same peers the same bytes at the same times: once
 * as many bare writes as deliveries, once the writes the relay makes (one per peer per
 * burst, and its nudges).
 *
 * The generator runs in its own process with mimalloc's purging off: a bursty load
 * otherwise has it hand its memory back between bursts and fault it in again, which
 * doubled its CPU per delivery and was measured as relay latency. The relay gets the
 * allocator settings of the image (Dockerfile.prebuilt), or none with `relayEnv: "bare"`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { broadcastPrefix, encodeBroadcastFrame, toByteArrayWire } from "../src/protocol/messages.ts";
import { connectPool, runPhase, type PhaseResult, type PhaseSpec } from "./load.ts";
import { createLimit, type Limit, type LimitMode, type Throttling, throttlingSince } from "./limit.ts";
import { freePort, launchRelay } from "./relay-process.ts";
import { describeTrace, type TraceSummary, traceBeats } from "./beat-trace.ts";
import { countSyscalls, type SyscallCounts } from "./syscalls.ts";
import type { FloorReport, FloorSpec } from "./write-floor.ts";

export interface CapacityLoad {
  label: string;
  sessions: number;
  size: number;
  /** Edits per second per instance. */
  rate: number;
  /** Targets (issue 25). */
  p99Ms: number;
  rssMb?: number;
  cpuUsPerDelivery?: number;
}

export const CAPACITY_LOADS: CapacityLoad[] = [
  { label: "k=50, one session, 2 edits/s each, in phase", sessions: 1, size: 50, rate: 2, p99Ms: 10 },
  {
    label: "k=100, one session, 2 edits/s each, in phase",
    sessions: 1,
    size: 100,
    rate: 2,
    p99Ms: 10,
    cpuUsPerDelivery: 2,
  },
  { label: "k=200, one session, 2 edits/s each, in phase", sessions: 1, size: 200, rate: 2, p99Ms: 25 },
  { label: "250 sessions of 4, 1 edit/s each", sessions: 250, size: 4, rate: 1, p99Ms: 10, rssMb: 200 },
];

const PAYLOAD = 256;
/** Seconds of the measured run `traceBeats` records, from 2 s in: a dozen beats. */
const TRACE_S = 6;
const GENERATOR_ENV = { MIMALLOC_PURGE_DELAY: "-1" };

export interface CapacityOptions {
  mode?: LimitMode;
  /** Loads by instance count (1000: 250 sessions of 4); all when absent. */
  only?: number[];
  /** Count the relay's syscalls with perf. */
  countWrites?: boolean;
  /** "image": the allocator settings Dockerfile.prebuilt gives the relay; "bare": none. */
  relayEnv?: "image" | "bare";
  /** More relay flags (say, `--nudge-interval 0`). */
  relayFlags?: string[];
  /** Seconds of load before each measured run (default 30): the JIT was still compiling for 20-30 s of this load. */
  warmupS?: number;
  /** Processes the instances (senders and receivers alike) are spread over, the generator's own included (default 1). */
  generatorProcesses?: number;
  /** `--one-core`: the relay side on one core alone, the generator on the others (`choosePinning`). */
  oneCore?: boolean;
  /** Loads of one session: where a beat's time goes, traced with perf for 6 s of the measured run (bench/beat-trace.ts). */
  traceBeats?: boolean;
}

/** Which cores (taskset lists) the relay side and the generator run on. */
export interface Pinning {
  relay: string;
  generator: string;
}

/**
 * `oneCore`: the relay side on the first core alone, as on a VPS of one virtual CPU (its JIT and collector
 * threads share that core with it), and the generator on the others. Null where it cannot be had (fewer than 2
 * cores, no taskset) or is not asked for: then the kernel places both, as Docker's `--cpus 0.5` on a host of
 * several cores does.
 */
export function choosePinning(oneCore: boolean): Pinning | null {
  const cores = navigator.hardwareConcurrency;
  if (!oneCore || cores < 2 || !Bun.which("taskset")) return null;
  return { relay: "0", generator: `1-${cores - 1}` };
}

/** `limit`, with what it runs kept to the relay's core. */
export function pinnedLimit(limit: Limit, pin: Pinning | null): Limit {
  if (pin === null) return limit;
  return { ...limit, wrap: (command, name) => limit.wrap(["taskset", "-c", pin.relay, ...command], name) };
}

function describePinning(pin: Pinning | null, oneCore: boolean): string {
  if (pin !== null)
    return `relay side (relay, floors) on core ${pin.relay} alone, generator on cores ${pin.generator} (--one-core, taskset)`;
  return oneCore ? "not pinned: fewer than 2 cores or no taskset" : "where the kernel puts them (no --one-core)";
}

export interface FloorResult extends FloorReport {
  cpuUsPerDelivery: number;
  throttling: Throttling | null;
}

export interface CapacityResult {
  load: CapacityLoad;
  run: PhaseResult;
  cpuUsPerDelivery: number | null;
  throttling: Throttling | null;
  /** Pongs the relay sent to instances it had sent nothing for the nudge interval (its /status). */
  nudgesPerSec: number;
  /** The relay's socket syscalls over the measured run (`countWrites`, with perf). */
  syscalls: SyscallCounts | null;
  /** `traceBeats`: the beats traced, or why not; null when not asked for. */
  trace: { summary: TraceSummary | null; reason?: string } | null;
  /**
   * As many writes as deliveries; the writes the relay makes; the same without its nudges (what the beats
   * alone cost); a relay with no rules (bench/bare-relay.ts).
   */
  floor: { perFrame: FloorResult; relayWrites: FloorResult; beatWrites: FloorResult; bareRelay: BareRelayResult };
}

type FloorCpu = Pick<FloorResult, "cpuUsPerDelivery" | "deliveries" | "nudges">;

/**
 * What the nudges cost in the floor of the relay's writes: the floor with them less the floor without,
 * per delivery and per nudge: how much of the CPU target the writes today's client needs take on this
 * machine before the relay does anything of its own.
 */
export function nudgeCost(withNudges: FloorCpu, beatsAlone: FloorCpu): { perDeliveryUs: number; perNudgeUs: number } {
  const perDeliveryUs = withNudges.cpuUsPerDelivery - beatsAlone.cpuUsPerDelivery;
  const perNudgeUs = withNudges.nudges === 0 ? Number.NaN : (perDeliveryUs * withNudges.deliveries) / withNudges.nudges;
  return { perDeliveryUs, perNudgeUs };
}

export interface BareRelayResult {
  p50Ms: number;
  p99Ms: number;
  lost: number;
  cpuUsPerDelivery: number | null;
  nudgesPerSec: number;
}

export interface CapacityRun {
  limit: string;
  /** Which cores the relay side and the generator ran on. */
  cores: string;
  /** The machine's 1-minute load average when the run started and ended: what else ran. */
  loadAverage: [number, number];
  relayEnv: string;
  generatorEnv: string;
  frameBytes: number;
  results: CapacityResult[];
}

/** The StateBroadcast frame a peer gets for one 256 B edit, to give the floor the same bytes. */
function broadcastBytes(): number {
  const payload = new Uint8Array(PAYLOAD).map((_, i) => (i * 7) & 0xff);
  return encodeBroadcastFrame(broadcastPrefix("bench-0"), 1n << 62n, toByteArrayWire(payload)).length;
}

/** The MIMALLOC_* settings the image's ENV gives the relay. */
export function imageAllocatorEnv(): Record<string, string> {
  const dockerfile = readFileSync(join(import.meta.dir, "..", "Dockerfile.prebuilt"), "utf8");
  return Object.fromEntries([...dockerfile.matchAll(/\b(MIMALLOC_[A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
}

function relayEnvironment(which: "image" | "bare"): { env: Record<string, string | undefined>; text: string } {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MIMALLOC_")) env[k] = v;
  const extra = which === "image" ? imageAllocatorEnv() : {};
  const text = Object.entries(extra)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  return {
    env: { ...env, ...extra },
    text: `${which === "image" ? "as Dockerfile.prebuilt sets it" : "bare"}: ${text || "no allocator settings"}`,
  };
}

const loadAverage = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

/** What this process started inside the limit, to end on a signal before the limit is removed. */
const inside = new Set<number>();

const tokens = (n: number) => Array.from({ length: n }, (_, i) => `capacity-session-token-${i}`);

async function measureLoad(
  binary: string | null,
  limit: Limit,
  load: CapacityLoad,
  durationS: number,
  name: string,
  options: CapacityOptions & { env: Record<string, string | undefined>; command?: string[] },
): Promise<Omit<CapacityResult, "floor">> {
  const n = load.sessions * load.size;
  const sessionTokens = load.sessions > 1 ? tokens(load.sessions) : null;
  const httpPort = freePort();
  const relay = await launchRelay({
    binary,
    command: options.command,
    keepDefaults: options.command !== undefined,
    flags: [
      "--http-port",
      String(httpPort),
      "--max-instances",
      String(n + 10),
      ...(sessionTokens ?? []).flatMap((t) => ["--token", t]),
      ...(options.relayFlags ?? []),
    ],
    env: options.env,
    wrap: {
      command: (c) => limit.wrap(c, name),
      pid: (p) => {
        inside.add(p);
        return limit.programPid(p, name);
      },
      cpuSeconds: (p) => limit.counters(p).cpuSeconds(),
    },
  });
  try {
    const processes = Math.max(1, options.generatorProcesses ?? 1);
    const pool = await connectPool(relay, n, {
      tokens: sessionTokens ?? undefined,
      receiverProcesses: processes - 1,
      local: Math.ceil(n / processes),
    });
    try {
      // Instance i is in session i % sessions: a session's members are in phase, sessions spread.
      const spec: PhaseSpec = {
        senders: n,
        rate: load.rate,
        durationS,
        payload: PAYLOAD,
        sessionSize: load.size,
        phase: (s) => (s % load.sessions) / load.sessions,
      };
      await runPhase(pool, { ...spec, durationS: options.warmupS ?? 30 });
      const counters = limit.counters(relay.pid);
      const cpu0 = counters.cpuSeconds();
      const thr0 = counters.throttling();
      const perf = options.countWrites ? countSyscalls(relay.pid) : null;
      const nudges0 = await nudgesOf(httpPort);
      const t0 = performance.now();
      const tracing =
        options.traceBeats && load.sessions === 1
          ? Bun.sleep(2000).then(() => traceBeats(relay.pid, [process.pid, ...pool.remotes.map((r) => r.pid)], TRACE_S))
          : null;
      const run = await runPhase(pool, spec);
      const cpu1 = counters.cpuSeconds();
      const trace = await tracing;
      const nudgesPerSec = ((await nudgesOf(httpPort)) - nudges0) / ((performance.now() - t0) / 1000);
      const syscalls = (await perf?.stop()) ?? null;
      return {
        nudgesPerSec,
        load,
        run,
        cpuUsPerDelivery:
          cpu0 === null || cpu1 === null || run.delivered === 0 ? null : ((cpu1 - cpu0) * 1e6) / run.delivered,
        throttling: throttlingSince(counters.throttling(), thr0),
        syscalls,
        trace,
      };
    } finally {
      pool.close();
    }
  } finally {
    await relay.stop();
    inside.delete(relay.pid);
  }
}

/** The relay's nudge counter, from /status. */
async function nudgesOf(httpPort: number): Promise<number> {
  const status = (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as { totals: { nudges: number } };
  return status.totals.nudges;
}

/** Splits a byte stream into lines as they come. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    const parts = pending.split("\n");
    pending = parts.pop()!;
    yield* parts;
  }
}

export async function measureFloor(limit: Limit, spec: FloorSpec, name: string): Promise<FloorResult> {
  const program = [process.execPath, join(import.meta.dir, "write-floor.ts"), JSON.stringify(spec)];
  const floor = Bun.spawn(limit.wrap(program, name), { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  inside.add(floor.pid);
  let sink: ReturnType<typeof Bun.spawn> | null = null;
  try {
    const counters = limit.counters(await limit.programPid(floor.pid, name));
    let cpu0: number | null = null;
    let thr0: Throttling | null = null;
    for await (const line of lines(floor.stdout)) {
      if (line.startsWith("port ")) {
        const args = ["127.0.0.1", line.slice(5), String(spec.groups * spec.size)];
        sink = Bun.spawn([process.execPath, join(import.meta.dir, "sink.ts"), ...args], {
          stdout: "ignore",
          stderr: "inherit",
        });
      } else if (line === "measuring") {
        cpu0 = counters.cpuSeconds();
        thr0 = counters.throttling();
      } else if (line.startsWith("{")) {
        const cpu1 = counters.cpuSeconds();
        const report = JSON.parse(line) as FloorReport;
        return {
          ...report,
          cpuUsPerDelivery:
            cpu0 === null || cpu1 === null ? Number.NaN : ((cpu1 - cpu0) * 1e6) / Math.max(1, report.deliveries),
          throttling: throttlingSince(counters.throttling(), thr0),
        };
      }
    }
    throw new Error(`the floor program ended without a report (exit ${await floor.exited})`);
  } finally {
    sink?.kill();
    floor.kill();
    await floor.exited;
    inside.delete(floor.pid);
  }
}

/**
 * The same load against bench/bare-relay.ts in the same limit: what the machine, the loopback
 * writes and the generator cost without any of the relay's rules. Its JIT settles within seconds.
 */
async function measureBareRelay(
  limit: Limit,
  load: CapacityLoad,
  durationS: number,
  name: string,
  options: CapacityOptions & { env: Record<string, string | undefined> },
): Promise<BareRelayResult> {
  const command = [process.execPath, join(import.meta.dir, "bare-relay.ts")];
  const warmupS = Math.min(options.warmupS ?? 30, 10);
  const r = await measureLoad(null, limit, load, durationS, name, { ...options, warmupS, command });
  return {
    p50Ms: r.run.latencyMs.p50,
    p99Ms: r.run.latencyMs.p99,
    lost: r.run.lost,
    cpuUsPerDelivery: r.cpuUsPerDelivery,
    nudgesPerSec: r.nudgesPerSec,
  };
}

/** One capacity run in this process (the generator's), the relay side on `pin`'s core when given. */
async function runHere(
  binary: string | null,
  durationS: number,
  options: CapacityOptions,
  pin: Pinning | null,
): Promise<Omit<CapacityRun, "cores">> {
  const name = `sova-bench-${process.pid}`;
  const made = createLimit(name, join(import.meta.dir, "..", ".tmp", "bench-capacity"), options.mode);
  if (made === null)
    throw new Error(
      "no way to limit the relay here: cgroups v1/v2 cannot be written (run as root)" +
        " and podman is not installed (apt-get install podman runc)",
    );
  const limit = pinnedLimit(made, pin);
  // Interrupted (Ctrl-C, or the parent ended): what runs inside the limit goes first, then the limit.
  const onSignal = () => {
    for (const pid of inside) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    const deadline = Date.now() + 2000;
    while (!limit.remove() && Date.now() < deadline) Bun.sleepSync(20);
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const relayEnv = relayEnvironment(options.relayEnv ?? "image");
  const frameBytes = broadcastBytes();
  const load0 = loadAverage();
  const results: CapacityResult[] = [];
  try {
    for (const [i, load] of CAPACITY_LOADS.entries()) {
      if (options.only && !options.only.includes(load.sessions * load.size)) continue;
      const tag = `${name}-${i}`;
      const measured = await measureLoad(binary, limit, load, durationS, tag, { ...options, env: relayEnv.env });
      const floorSpec = (perFrame: boolean): FloorSpec => ({
        groups: load.sessions,
        size: load.size,
        rate: load.rate,
        frameBytes,
        perFrame,
        nudgesPerSec: measured.nudgesPerSec,
        warmupS: 2,
        durationS: Math.min(durationS, 6),
      });
      const perFrame = await measureFloor(limit, floorSpec(true), `${tag}-floor-frame`);
      const relayWrites = await measureFloor(limit, floorSpec(false), `${tag}-floor-relay`);
      const beatWrites = await measureFloor(limit, { ...floorSpec(false), nudgesPerSec: 0 }, `${tag}-floor-beats`);
      const bareRelay = await measureBareRelay(limit, load, durationS, `${tag}-bare`, {
        ...options,
        env: relayEnv.env,
      });
      results.push({ ...measured, floor: { perFrame, relayWrites, beatWrites, bareRelay } });
      process.stderr.write(
        `  capacity ${load.label}: p99 ${measured.run.latencyMs.p99.toFixed(2)} ms, lost ${measured.run.lost},` +
          ` relay ${measured.cpuUsPerDelivery?.toFixed(2) ?? "n/a"} µs CPU per delivery` +
          ` (floor of its writes ${relayWrites.cpuUsPerDelivery.toFixed(2)},` +
          ` ${nudgeCost(relayWrites, beatWrites).perDeliveryUs.toFixed(2)} of it nudges);` +
          ` a relay with no rules: p99 ${bareRelay.p99Ms.toFixed(2)} ms,` +
          ` ${bareRelay.cpuUsPerDelivery?.toFixed(2) ?? "n/a"} µs per delivery\n`,
      );
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!limit.remove()) process.stderr.write(`  capacity: could not remove ${limit.describe}: still in use\n`);
  }
  const generatorEnv = Object.entries(GENERATOR_ENV)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  return {
    limit: limit.describe,
    loadAverage: [load0, loadAverage()],
    relayEnv: relayEnv.text,
    generatorEnv,
    frameBytes,
    results,
  };
}

/**
 * Every load of CAPACITY_LOADS (or those in `only`), each followed by its floors, in a
 * child process with the generator's allocator settings; progress goes to stderr.
 */
export async function runCapacity(
  binary: string | null,
  durationS: number,
  options: CapacityOptions,
): Promise<CapacityRun> {
  const oneCore = options.oneCore === true;
  const pin = choosePinning(oneCore);
  const pinTo = pin ? ["taskset", "-c", pin.generator] : [];
  const args = JSON.stringify({ binary, durationS, options, pin });
  const child = Bun.spawn([...pinTo, process.execPath, import.meta.path, args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, ...GENERATOR_ENV },
  });
  const out = await new Response(child.stdout).text();
  if ((await child.exited) !== 0) throw new Error(out.trim() || `the capacity run failed (exit ${child.exitCode})`);
  return { ...(JSON.parse(out) as Omit<CapacityRun, "cores">), cores: describePinning(pin, oneCore) };
}

if (import.meta.main) {
  const { binary, durationS, options, pin } = JSON.parse(process.argv[2]!) as {
    binary: string | null;
    durationS: number;
    options: CapacityOptions;
    pin: Pinning | null;
  };
  try {
    console.log(JSON.stringify(await runHere(binary, durationS, options, pin)));
  } catch (error) {
    console.log((error as Error).message);
    process.exit(1);
  }
}

interface CapacityRow {
  scenario: string;
  figures: Record<string, string | number>;
  target: string;
  pass: boolean;
}

const f2 = (n: number) => n.toFixed(2);

function floorFigure(fl: FloorResult): string {
  return (
    `${f2(fl.cpuUsPerDelivery)} µs CPU/delivery (${fl.writes} writes${fl.nudges ? `, ${fl.nudges} of them nudges` : ""}),` +
    ` burst p50 ${f2(fl.burstMs.p50)} / p99 ${f2(fl.burstMs.p99)} ms` +
    (fl.throttling ? `, throttled ${fl.throttling.throttled}/${fl.throttling.periods}` : "") +
    (fl.shortWrites > 0 ? `, ${fl.shortWrites} short writes` : "")
  );
}

/** The bench's rows for a capacity run; `phaseRow` gives the figures every load scenario prints. */
export function capacityRows<R extends CapacityRow>(
  c: CapacityRun,
  phaseRow: (scenario: string, r: PhaseResult, target: string, pass: boolean) => R,
): R[] {
  return c.results.map(({ load, run, cpuUsPerDelivery, throttling, nudgesPerSec, syscalls, trace, floor }) => {
    const cpu = cpuUsPerDelivery ?? Infinity;
    const ratio = cpu / floor.relayWrites.cpuUsPerDelivery;
    const cpuOk = load.cpuUsPerDelivery === undefined || (cpu < load.cpuUsPerDelivery && ratio <= 3);
    const rssOk = load.rssMb === undefined || (run.rssMb.peak ?? Infinity) < load.rssMb;
    const target =
      `no loss, p99 < ${load.p99Ms} ms` +
      (load.rssMb ? `, RSS < ${load.rssMb} MB` : "") +
      (load.cpuUsPerDelivery
        ? `, relay CPU < ${load.cpuUsPerDelivery} µs per delivery and within 3x of the floor of its writes`
        : "");
    const pass = run.lost === 0 && run.outOfOrder === 0 && run.latencyMs.p99 < load.p99Ms && cpuOk && rssOk;
    const row = phaseRow(`capacity: ${load.label}`, run, target, pass);
    row.figures.limit = c.limit;
    row.figures.cores = c.cores;
    row.figures["machine load (1-min avg)"] =
      `${c.loadAverage[0]} at the start, ${c.loadAverage[1]} at the end of the capacity runs` +
      ` (${navigator.hardwareConcurrency} cores; above 1 or so, others' work is in these figures)`;
    row.figures["relay environment"] = c.relayEnv;
    row.figures["generator environment"] = c.generatorEnv;
    row.figures["relay CPU µs/delivery"] = cpuUsPerDelivery === null ? "n/a" : f2(cpuUsPerDelivery);
    row.figures["relay nudges/s"] = Math.round(nudgesPerSec);
    row.figures["quota throttled"] = throttling
      ? `${throttling.throttled}/${throttling.periods} periods, ${Math.round(throttling.throttledMs)} ms`
      : "n/a";
    row.figures["floor: a write per delivery"] = floorFigure(floor.perFrame);
    row.figures["floor: the relay's writes"] = floorFigure(floor.relayWrites);
    row.figures["floor: the relay's writes without its nudges"] = floorFigure(floor.beatWrites);
    const nudges = nudgeCost(floor.relayWrites, floor.beatWrites);
    row.figures["the nudges in that floor"] =
      `${f2(nudges.perDeliveryUs)} µs CPU/delivery` +
      (Number.isFinite(nudges.perNudgeUs) ? `, ${f2(nudges.perNudgeUs)} µs a nudge` : "");
    row.figures["relay / floor of its writes"] = Number.isFinite(ratio) ? `${ratio.toFixed(1)}x` : "n/a";
    const bare = floor.bareRelay;
    row.figures["floor: a relay with no rules"] =
      `p50 ${f2(bare.p50Ms)} / p99 ${f2(bare.p99Ms)} ms, lost ${bare.lost},` +
      ` ${bare.cpuUsPerDelivery === null ? "n/a" : f2(bare.cpuUsPerDelivery)} µs CPU/delivery,` +
      ` ${Math.round(bare.nudgesPerSec)} nudges/s (bench/bare-relay.ts, same limit, same generator)`;
    row.figures["relay p99 over that floor"] = `${f2(run.latencyMs.p99 - bare.p99Ms)} ms`;
    row.figures["frame bytes"] = c.frameBytes;
    if (syscalls !== null) {
      const per = (n: number) => (n / Math.max(1, run.delivered)).toFixed(3);
      row.figures["relay syscalls per delivery"] =
        `writes ${per(syscalls.writes)}, reads ${per(syscalls.reads)}, polls ${per(syscalls.polls)}` +
        ` (${syscalls.writes} writes for ${run.delivered} deliveries)`;
    }
    if (trace !== null)
      row.figures["beat trace (perf, 6 s; its cost is in this run's figures)"] = trace.summary
        ? describeTrace(trace.summary)
        : `none: ${trace.reason}`;
    return row;
  });
}
