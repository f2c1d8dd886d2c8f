/**
 * The bare-write floor of the capacity scenario, run inside the same limit as the
 * relay: a Bun program with no relay logic that gives `groups` x `size` loopback
 * connections (opened by bench/sink.ts outside the limit) the bytes the relay
 * would, at the same times: each group (session) bursts `rate` times a second, in
 * phase within it, groups spread over the period; in a burst every member gets
 * `size - 1` frames of `frameBytes`.
 *
 * - `perFrame`: each frame is its own write, as many writes as deliveries (what a relay
 *   that never coalesced would make).
 * - otherwise the writes the relay makes: each member's frames leave as one write, and
 *   30-byte frames go out at the rate the relay sent its nudges in the measured run
 *   (`nudgesPerSec`, from its /status), to the members in turn, every 10 ms.
 *
 * Prints `port N`, then `measuring` when the measured part starts (the parent reads
 * the cgroup's CPU then), then one JSON line with the counts and burst times, and
 * waits to be ended. Started by bench/capacity.ts, not by hand.
 */
import type { Socket } from "bun";

export interface FloorSpec {
  groups: number;
  size: number;
  rate: number;
  frameBytes: number;
  perFrame: boolean;
  nudgesPerSec: number;
  warmupS: number;
  durationS: number;
}

export interface FloorReport {
  writes: number;
  nudges: number;
  deliveries: number;
  shortWrites: number;
  /** Time to make one burst's writes, ms: p50, p99. */
  burstMs: { p50: number; p99: number };
}

/** After "measuring", this long without a burst, so the parent reads the counter before any. */
const ANNOUNCE_MS = 50;
const NUDGE_BYTES = 30;
const NUDGE_SWEEP_MS = 10;

async function acceptAll(peers: number): Promise<{ sockets: Socket[]; stop(): void }> {
  const sockets: Socket[] = [];
  const { promise: allIn, resolve } = Promise.withResolvers<void>();
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.timeout(0);
        s.setNoDelay(true);
        if (sockets.push(s) === peers) resolve();
      },
      data() {},
    },
  });
  console.log(`port ${server.port}`);
  await allIn;
  return { sockets, stop: () => server.stop(true) };
}

async function main(spec: FloorSpec): Promise<void> {
  const { sockets, stop } = await acceptAll(spec.groups * spec.size);
  const frame = new Uint8Array(spec.frameBytes).fill(7);
  const merged = new Uint8Array(spec.frameBytes * (spec.size - 1)).fill(7);
  const nudge = new Uint8Array(NUDGE_BYTES).fill(7);
  const times: number[] = [];
  const counts = { writes: 0, nudges: 0, deliveries: 0, shortWrites: 0 };
  let measuring = false;

  const write = (m: number, bytes: Uint8Array) => {
    if (sockets[m]!.write(bytes) < bytes.length) counts.shortWrites++;
    counts.writes++;
  };

  function burst(group: number): void {
    const t0 = performance.now();
    for (let m = group * spec.size; m < (group + 1) * spec.size; m++) {
      if (spec.perFrame) for (let f = 1; f < spec.size; f++) write(m, frame);
      else write(m, merged);
      counts.deliveries += spec.size - 1;
    }
    if (measuring) times.push(performance.now() - t0);
  }

  let owed = 0;
  let next = 0;
  let swept = performance.now();
  const nudger =
    !spec.perFrame && spec.nudgesPerSec > 0
      ? setInterval(() => {
          const now = performance.now();
          owed += (spec.nudgesPerSec * (now - swept)) / 1000;
          swept = now;
          for (; owed >= 1; owed--) {
            write(next, nudge);
            counts.nudges++;
            next = (next + 1) % sockets.length;
          }
        }, NUDGE_SWEEP_MS)
      : null;

  // The g-th group bursts at (n + g / groups) / rate seconds: one timer per due burst, none in between.
  const stepMs = 1000 / (spec.rate * spec.groups);
  let start = performance.now();
  const warmEnd = start + spec.warmupS * 1000;
  const end = warmEnd + spec.durationS * 1000 + ANNOUNCE_MS;
  let step = 0;
  await new Promise<void>((done) => {
    const next = () => {
      const now = performance.now();
      if (now >= end) return done();
      if (!measuring && now >= warmEnd) {
        measuring = true;
        for (const k of Object.keys(counts) as Array<keyof typeof counts>) counts[k] = 0;
        console.log("measuring");
        start += ANNOUNCE_MS;
      }
      while (start + step * stepMs <= now) burst(step++ % spec.groups);
      setTimeout(next, Math.max(0, start + step * stepMs - performance.now()));
    };
    next();
  });
  if (nudger) clearInterval(nudger);
  times.sort((a, b) => a - b);
  const q = (f: number) => times[Math.min(times.length - 1, Math.floor(f * times.length))] ?? 0;
  const report: FloorReport = { ...counts, burstMs: { p50: q(0.5), p99: q(0.99) } };
  console.log(JSON.stringify(report));
  stop();
}

await main(JSON.parse(process.argv[2]!) as FloorSpec);
// The parent reads the cgroup's counters now and then ends this process.
await new Promise(() => {});
