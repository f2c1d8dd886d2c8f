/**
 * The load generator: N instances in one session, K of them sending R updates a
 * second of P bytes. Each update carries its send time (µs) in the timestamp
 * field and its sender and sequence number in the first 6 payload bytes, so
 * every receiver can measure latency, loss and order from the bytes alone.
 */
import { connect, type RelayClient } from "../src/client.ts";
import { frameOf } from "../src/protocol/framing.ts";
import { encodeMessage } from "../src/protocol/messages.ts";
import type { BenchRelay } from "./relay-process.ts";

export interface Pool {
  relay: BenchRelay;
  clients: RelayClient[];
  /** Registered connections that never read (overload scenario). */
  sleepers: Array<{ terminate(): void }>;
  connectMs: number;
  onBroadcast: ((receiver: number, body: Uint8Array) => void) | null;
  close(): void;
}

export interface PhaseSpec {
  senders: number;
  /** Updates per second per sender; Infinity: as fast as the socket takes them. */
  rate: number;
  durationS: number;
  payload: number;
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

export const nowUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

export async function connectPool(relay: BenchRelay, instances: number, options: { sleepers?: number; tokens?: string[] } = {}): Promise<Pool> {
  const pool: Pool = {
    relay,
    clients: [],
    sleepers: [],
    connectMs: 0,
    onBroadcast: null,
    close() {
      for (const c of pool.clients) c.close();
      for (const s of pool.sleepers) s.terminate();
    },
  };
  const t0 = performance.now();
  const batch = 250;
  for (let start = 0; start < instances; start += batch) {
    const group = await Promise.all(
      Array.from({ length: Math.min(batch, instances - start) }, async (_, j) => {
        const index = start + j;
        const c = await connect({ host: relay.host, port: relay.port, keepInbox: false, rawBroadcasts: true, skipInstanceList: true, connectTimeoutMs: 20_000 });
        c.onFrame((body) => pool.onBroadcast?.(index, body));
        const token = options.tokens ? options.tokens[index % options.tokens.length]! : null;
        await c.register({ name: `bench-${index}`, token });
        return c;
      }),
    );
    pool.clients.push(...group);
  }
  pool.connectMs = performance.now() - t0;
  for (let i = 0; i < (options.sleepers ?? 0); i++) {
    const s = await Bun.connect({ hostname: relay.host, port: relay.port, socket: { data() {}, close() {}, error() {} } });
    s.write(frameOf(encodeMessage({ type: "RegisterInstance", instance_name: `sleeper-${i}`, version: "0.1.0", session_token: null, capabilities: [] })));
    s.pause();
    pool.sleepers.push(s);
  }
  // A round trip through every client makes sure every registration (and sleeper) is in.
  await Promise.all(pool.clients.map((c) => c.ping(1n, 30_000)));
  return pool;
}

/** Reads sender, sequence and send time out of a StateBroadcast body as the relay writes it. */
export function parseBroadcast(body: Uint8Array): { sender: number; seq: number; sentUs: number } | null {
  // 81 ae "StateBroadcast" 83 b4 "source_instance_name" = 38 bytes, then the name.
  let p = 38;
  const m = body[p]!;
  if (m >= 0xa0 && m <= 0xbf) p += 1 + (m & 0x1f);
  else if (m === 0xd9) p += 2 + body[p + 1]!;
  else return null;
  p += 10; // a9 "timestamp"
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let sentUs: number;
  const t = body[p]!;
  if (t === 0xcf) {
    sentUs = Number(view.getBigUint64(p + 1));
    p += 9;
  } else if (t === 0xce) {
    sentUs = view.getUint32(p + 1);
    p += 5;
  } else return null;
  p += 12; // ab "update_data"
  const a = body[p]!;
  p += a >= 0x90 && a <= 0x9f ? 1 : a === 0xdc ? 3 : 5;
  const head = [0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 6; i++) {
    const e = body[p]!;
    if (e === 0xcc) {
      head[i] = body[p + 1]!;
      p += 2;
    } else {
      head[i] = e;
      p += 1;
    }
  }
  const seq = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
  return { sender: (head[4]! << 8) | head[5]!, seq, sentUs };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function runPhase(pool: Pool, spec: PhaseSpec): Promise<PhaseResult> {
  const n = pool.clients.length;
  const senders = Math.min(spec.senders, n);
  const lastSeq = new Int32Array(n * senders).fill(-1);
  const expectedRate = spec.rate === Infinity ? 200_000 : spec.rate * senders * (n - 1);
  let samples = new Float64Array(Math.min(8_000_000, Math.max(1024, Math.ceil(expectedRate * (spec.durationS + 2)))));
  let delivered = 0;
  let outOfOrder = 0;
  let lastDelivery = performance.now();
  const alive = new Uint8Array(n).fill(1);
  pool.clients.forEach((c, i) => void c.closed.then(() => (alive[i] = 0)));

  pool.onBroadcast = (receiver, body) => {
    const b = parseBroadcast(body);
    if (b === null || b.sender >= senders) return;
    const latencyMs = (nowUs() - b.sentUs) / 1000;
    if (delivered >= samples.length) {
      const bigger = new Float64Array(samples.length * 2);
      bigger.set(samples);
      samples = bigger;
    }
    samples[delivered++] = latencyMs;
    lastDelivery = performance.now();
    const k = receiver * senders + b.sender;
    if (b.seq <= lastSeq[k]!) outOfOrder++;
    lastSeq[k] = b.seq;
  };

  const rssBefore = pool.relay.rssMb();
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    const r = pool.relay.rssMb();
    if (r !== null && (rssPeak === null || r > rssPeak)) rssPeak = r;
  }, 100);

  const payloads = Array.from({ length: senders }, (_, s) => {
    const p = new Uint8Array(Math.max(6, spec.payload));
    for (let i = 6; i < p.length; i++) p[i] = (i * 7 + s) & 0xff;
    p[4] = s >> 8;
    p[5] = s & 0xff;
    return p;
  });
  const sent = new Array<number>(senders).fill(0);
  const relayCpu0 = pool.relay.cpuSeconds();
  const generatorCpu0 = process.cpuUsage();
  const start = performance.now();
  const endAt = start + spec.durationS * 1000;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (now >= endAt) return resolve();
      for (let s = 0; s < senders; s++) {
        const c = pool.clients[s]!;
        if (c.isClosed) continue;
        let due: number;
        if (spec.rate === Infinity) due = c.pendingBytes < 256 * 1024 ? 64 : 0;
        // Senders are independent players: each starts at its own phase of the period
        // rather than all in the same millisecond.
        else due = Math.floor(((now - start) / 1000) * spec.rate + s / senders) - sent[s]!;
        for (let i = 0; i < due; i++) {
          const p = payloads[s]!;
          const seq = sent[s]!++;
          p[0] = seq >>> 24;
          p[1] = (seq >>> 16) & 0xff;
          p[2] = (seq >>> 8) & 0xff;
          p[3] = seq & 0xff;
          c.sendUpdate(p, BigInt(nowUs()));
        }
      }
      setTimeout(tick, 1);
    };
    tick();
  });
  const sendSeconds = (performance.now() - start) / 1000;
  const totalSent = sent.reduce((a, b) => a + b, 0);
  // Every update goes to every other instance; a receiver that was cut counts as loss.
  const expected = totalSent * (n - 1);
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (delivered >= expected || performance.now() - lastDelivery > 2000) {
        clearInterval(check);
        resolve();
      }
    }, 20);
  });
  clearInterval(sampler);
  pool.onBroadcast = null;
  const wallS = (performance.now() - start) / 1000;
  const relayCpu1 = pool.relay.cpuSeconds();
  const generatorCpu = process.cpuUsage(generatorCpu0);
  const lat = samples.subarray(0, delivered).sort();
  return {
    spec,
    instances: n,
    sent: totalSent,
    expected,
    delivered,
    lost: expected - delivered,
    outOfOrder,
    deliveriesPerSec: delivered / sendSeconds,
    latencyMs: { p50: percentile(lat, 0.5), p90: percentile(lat, 0.9), p99: percentile(lat, 0.99), p999: percentile(lat, 0.999), max: lat.length ? lat[lat.length - 1]! : 0 },
    rssMb: { before: rssBefore, peak: rssPeak, after: pool.relay.rssMb() },
    receiversCut: alive.reduce((a, v) => a + (v ? 0 : 1), 0),
    cpuPercent: {
      relay: relayCpu0 === null || relayCpu1 === null ? null : (100 * (relayCpu1 - relayCpu0)) / wallS,
      generator: (generatorCpu.user + generatorCpu.system) / 1e4 / wallS,
    },
  };
}
