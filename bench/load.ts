/**
 * The load generator: N instances in one session, K of them sending R updates a
 * second of P bytes. Each update carries its send time (µs) in the timestamp
 * field and its sender and sequence number in the first 6 payload bytes, so
 * every receiver can measure latency, loss and order from the bytes alone.
 */
import { join } from "node:path";
import { connect, type RelayClient, registerMessage } from "../src/client/client.ts";
import { frameOf } from "../src/protocol/framing.ts";
import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  peekVariant,
  toByteArrayWire,
  type Uuid,
} from "../src/protocol/messages.ts";
import type { FromReceivers, ReceiversSpec, ToReceivers } from "./receivers.ts";
import { paceSenders } from "./pacer.ts";
import { createRecorder, createUpdateTemplate, nowUs, type UpdateTemplate } from "./recorder.ts";
import { cpuSecondsOf, type BenchRelay } from "./relay-process.ts";

/** The ids the relay assigned to instances registered by registerQuietly. */
export const benchIds = new WeakMap<RelayClient, Uuid>();

/**
 * Registers without decoding the RegistrationResponse, which lists every instance
 * registered before (a crowd's thousands would cost the generator O(n^2) decoding):
 * the assigned id is read from the bytes, behind its key.
 */
function registerQuietly(c: RelayClient, name: string, token: string | null): Promise<Uuid> {
  const { promise, resolve, reject } = Promise.withResolvers<Uuid>();
  let done = false;
  c.onFrame((body) => {
    if (done) return;
    done = true;
    const variant = peekVariant(body);
    const at = Buffer.from(body.buffer, body.byteOffset, body.byteLength).indexOf(ID_KEY);
    if (variant === "RegistrationResponse" && at >= 0)
      resolve(new Uint8Array(body.subarray(at + ID_KEY.length, at + ID_KEY.length + 16)));
    else
      reject(
        new Error(
          `registration of ${name} failed:` +
            ` ${variant === "Error" ? (decodeMessage(body) as { message: string }).message : variant}`,
        ),
      );
  });
  c.send(registerMessage({ name, token }));
  return promise;
}

/** The key `assigned_id` (fixstr 11) and the bin-16 header of its value. */
const ID_KEY = Buffer.concat([Buffer.of(0xab), Buffer.from("assigned_id"), Buffer.of(0xc4, 0x10)]);

/** A child process holding some of the receiving instances (bench/receivers.ts). */
interface ReceiverProcess {
  readonly count: number;
  readonly pid: number;
  send(message: ToReceivers): void;
  /** The next message of this type from the child. */
  next<T extends FromReceivers["type"]>(type: T): Promise<Extract<FromReceivers, { type: T }>>;
  close(): void;
}

export interface Pool {
  relay: BenchRelay;
  /** Instances in this process; the senders are always the first of them. */
  clients: RelayClient[];
  /** Instances in receiver processes, after the local ones. */
  remotes: ReceiverProcess[];
  /** Every instance, local and remote. */
  instances: number;
  /** Registered connections that never read (overload scenario). */
  sleepers: Array<{ terminate(): void }>;
  connectMs: number;
  onBroadcast: ((receiver: number, body: Uint8Array) => void) | null;
  close(): void;
}

export interface PoolOptions {
  sleepers?: number;
  tokens?: string[];
  /** Spread all but the first `local` instances over this many receiver processes. */
  receiverProcesses?: number;
  local?: number;
}

/** Connects and registers instances bench-<from> .. bench-<to - 1>, 250 at a time. */
export async function connectInstances(
  target: { host: string; port: number; connect?: () => Promise<RelayClient> },
  from: number,
  to: number,
  tokens: string[] | null,
  onFrame: (local: number, body: Uint8Array) => void,
): Promise<RelayClient[]> {
  const clients: RelayClient[] = [];
  const batch = 250;
  for (let start = from; start < to; start += batch) {
    const group = await Promise.all(
      Array.from({ length: Math.min(batch, to - start) }, async (_, j) => {
        const index = start + j;
        const c = target.connect
          ? await target.connect()
          : await connect({
              host: target.host,
              port: target.port,
              keepInbox: false,
              connectTimeoutMs: 20_000,
            });
        const registered = registerQuietly(c, `bench-${index}`, tokens ? tokens[index % tokens.length]! : null);
        c.onFrame((body) => onFrame(index - from, body));
        benchIds.set(c, await registered);
        return c;
      }),
    );
    clients.push(...group);
  }
  return clients;
}

async function spawnReceivers(spec: ReceiversSpec): Promise<ReceiverProcess> {
  const inbox: FromReceivers[] = [];
  const waiters: Array<{ type: string; resolve: (m: FromReceivers) => void }> = [];
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "receivers.ts"), JSON.stringify(spec)], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    ipc(message: FromReceivers) {
      const i = waiters.findIndex((w) => w.type === message.type || message.type === "failed");
      if (i !== -1) waiters.splice(i, 1)[0]!.resolve(message);
      else inbox.push(message);
    },
  });
  const remote: ReceiverProcess = {
    count: spec.to - spec.from,
    pid: child.pid,
    send: (m) => child.send(m),
    next(type) {
      const i = inbox.findIndex((m) => m.type === type || m.type === "failed");
      const got =
        i !== -1
          ? Promise.resolve(inbox.splice(i, 1)[0]!)
          : new Promise<FromReceivers>((resolve) => waiters.push({ type, resolve }));
      return got.then((m) => {
        if (m.type === "failed") throw new Error(`receiver process: ${m.message}`);
        return m as never;
      });
    },
    close() {
      try {
        child.send({ type: "close" });
      } catch {}
      setTimeout(() => child.kill(), 2000).unref();
    },
  };
  await remote.next("ready");
  return remote;
}

export async function connectPool(relay: BenchRelay, instances: number, options: PoolOptions = {}): Promise<Pool> {
  const pool: Pool = {
    relay,
    clients: [],
    remotes: [],
    instances,
    sleepers: [],
    connectMs: 0,
    onBroadcast: null,
    close() {
      for (const c of pool.clients) c.close();
      for (const s of pool.sleepers) s.terminate();
      for (const r of pool.remotes) r.close();
    },
  };
  const processes = options.receiverProcesses ?? 0;
  const local = processes > 0 ? Math.min(instances, options.local ?? 0) : instances;
  const tokens = options.tokens ?? null;
  const t0 = performance.now();
  pool.clients = await connectInstances(relay, 0, local, tokens, (index, body) => pool.onBroadcast?.(index, body));
  const share = Math.ceil((instances - local) / Math.max(1, processes));
  const specs: ReceiversSpec[] = [];
  for (let from = local; from < instances; from += share)
    specs.push({ host: relay.host, port: relay.port, from, to: Math.min(instances, from + share), tokens });
  pool.remotes = await Promise.all(specs.map(spawnReceivers));
  pool.connectMs = performance.now() - t0;
  await connectSleepers(pool, options.sleepers ?? 0);
  return pool;
}

/** Instances that register and never read (`sleeper-N`), added to `pool`'s session. */
export async function connectSleepers(pool: Pool, count: number): Promise<void> {
  const { relay } = pool;
  const first = pool.sleepers.length;
  for (let i = first; i < first + count; i++) {
    const s = await Bun.connect({
      hostname: relay.host,
      port: relay.port,
      socket: { data() {}, close() {}, error() {} },
    });
    s.write(frameOf(encodeMessage(registerMessage({ name: `sleeper-${i}` }))));
    s.pause();
    pool.sleepers.push(s);
  }
  // A round trip through every client makes sure every registration (and sleeper) is in.
  await Promise.all(pool.clients.map((c) => c.ping(1n, 30_000)));
}

export interface PhaseSpec {
  senders: number;
  /** Updates per second per sender; Infinity: as fast as the socket takes them. */
  rate: number;
  durationS: number;
  payload: number;
  /**
   * Where in the period each sender sends, as a fraction of it; by default each at its own
   * (s / senders), as independent players. The capacity scenario puts an ensemble in phase.
   */
  phase?: (sender: number, senders: number) => number;
  /** Instances per session, when the pool is split into sessions by tokens (each update reaches size - 1). */
  sessionSize?: number;
}

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface PhaseResult {
  spec: PhaseSpec;
  instances: number;
  sent: number;
  expected: number;
  delivered: number;
  lost: number;
  outOfOrder: number;
  deliveriesPerSec: number;
  latencyMs: Latency;
  rssMb: { before: number | null; peak: number | null; after: number | null };
  receiversCut: number;
  /** Share of one core used while sending and draining: relay (null if not ours) and generator. */
  cpuPercent: { relay: number | null; generator: number };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Update frames for `clients`, the first of them sender number `firstSender`. */
export function updateTemplates(clients: RelayClient[], firstSender: number, payload: number): UpdateTemplate[] {
  return clients.map((c, i) =>
    createUpdateTemplate(
      (update_data, timestamp) =>
        encodeFrame({
          type: "StateUpdate",
          source_instance_id: benchIds.get(c)!,
          timestamp,
          update_data: toByteArrayWire(update_data),
        }),
      firstSender + i,
      payload,
    ),
  );
}

/** Senders in receiver processes start this late, so that every process starts on the same beat. */
const REMOTE_START_MS = 100;

export async function runPhase(pool: Pool, spec: PhaseSpec): Promise<PhaseResult> {
  const n = pool.instances;
  // The first `senders` instances send, wherever they live.
  const senders = Math.min(spec.senders, n);
  const reach = (spec.sessionSize ?? n) - 1;
  const phase = spec.phase ?? ((s: number, all: number) => s / all);
  const expectedRate = spec.rate === Infinity ? 200_000 : spec.rate * senders * reach;
  const local = createRecorder(pool.clients.length, senders, expectedRate * (spec.durationS + 2));
  const alive = new Uint8Array(pool.clients.length).fill(1);
  pool.clients.forEach((c, i) => void c.closed.then(() => (alive[i] = 0)));
  pool.onBroadcast = local.record;
  const startMs = nowUs() / 1000 + (pool.remotes.length > 0 ? REMOTE_START_MS : 0);
  const phases = (from: number, to: number) =>
    Array.from({ length: Math.max(0, to - from) }, (_, i) => phase(from + i, senders));
  let first = pool.clients.length;
  for (const r of pool.remotes) {
    const to = Math.min(first + r.count, senders);
    r.send({
      type: "start",
      senders,
      expectedDeliveries: (expectedRate * (spec.durationS + 2) * r.count) / n,
      pace: { rate: spec.rate, startMs, durationS: spec.durationS, phases: phases(first, to) },
      payload: spec.payload,
    });
    first += r.count;
  }
  // Receiver processes' CPU is the generator's too.
  const remoteCpu = () => pool.remotes.reduce((sum, r) => sum + (cpuSecondsOf(r.pid) ?? 0), 0);

  const rssBefore = pool.relay.rssMb();
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    const r = pool.relay.rssMb();
    if (r !== null && (rssPeak === null || r > rssPeak)) rssPeak = r;
  }, 100);

  const localSenders = pool.clients.slice(0, senders);
  const templates = updateTemplates(localSenders, 0, spec.payload);
  const relayCpu0 = pool.relay.cpuSeconds();
  const generatorCpu0 = process.cpuUsage();
  const remoteCpu0 = remoteCpu();
  const start = performance.now();
  const pace = { rate: spec.rate, startMs, durationS: spec.durationS, phases: phases(0, localSenders.length) };
  const sent = await paceSenders(localSenders, templates, pace);
  const sendSeconds = (nowUs() / 1000 - startMs) / 1000;
  const localSent = sent.reduce((a, b) => a + b, 0);
  let totalSent = localSent;
  // Done when everything expected arrived, or nothing did anywhere for 2 s.
  for (;;) {
    const progress = await Promise.all(pool.remotes.map((r) => (r.send({ type: "poll" }), r.next("progress"))));
    totalSent = progress.reduce((sum, p) => sum + p.sent, localSent);
    const delivered = progress.reduce((sum, p) => sum + p.delivered, local.delivered);
    const lastDeliveryMs = progress.reduce((last, p) => Math.max(last, p.lastDeliveryMs), local.lastDeliveryMs);
    // Every update goes to every other instance of its session; a receiver that was cut counts as loss.
    const done = delivered >= totalSent * reach || Date.now() - lastDeliveryMs > 2000;
    if (done && !progress.some((p) => p.pacing)) break;
    await Bun.sleep(pool.remotes.length > 0 ? 100 : 20);
  }
  const expected = totalSent * reach;
  const results = await Promise.all(pool.remotes.map((r) => (r.send({ type: "stop" }), r.next("result"))));
  clearInterval(sampler);
  pool.onBroadcast = null;
  const wallS = (performance.now() - start) / 1000;
  const relayCpu1 = pool.relay.cpuSeconds();
  const generatorCpu = process.cpuUsage(generatorCpu0);
  const generatorSeconds = (generatorCpu.user + generatorCpu.system) / 1e6 + (remoteCpu() - remoteCpu0);
  const delivered = results.reduce((sum, r) => sum + r.delivered, local.delivered);
  const lat = new Float64Array(delivered);
  lat.set(local.samples());
  let at = local.delivered;
  for (const r of results) {
    lat.set(r.samples, at);
    at += r.samples.length;
  }
  lat.sort();
  return {
    spec,
    instances: n,
    sent: totalSent,
    expected,
    delivered,
    lost: expected - delivered,
    outOfOrder: results.reduce((sum, r) => sum + r.outOfOrder, local.outOfOrder),
    deliveriesPerSec: delivered / sendSeconds,
    latencyMs: {
      p50: percentile(lat, 0.5),
      p90: percentile(lat, 0.9),
      p99: percentile(lat, 0.99),
      p999: percentile(lat, 0.999),
      max: lat.length ? lat[lat.length - 1]! : 0,
    },
    rssMb: { before: rssBefore, peak: rssPeak, after: pool.relay.rssMb() },
    receiversCut: results.reduce(
      (sum, r) => sum + r.cut,
      alive.reduce((a, v) => a + (v ? 0 : 1), 0),
    ),
    cpuPercent: {
      relay: relayCpu0 === null || relayCpu1 === null ? null : (100 * (relayCpu1 - relayCpu0)) / wallS,
      generator: (100 * generatorSeconds) / wallS,
    },
  };
}
