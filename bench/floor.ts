/**
 * What the machine allows, measured without the relay, so its figures can be read
 * against it. The fan-out floor: a bare Bun program writing one frame to
 * each of N loopback connections (read by another process), with no relay logic at
 * all. The relay cannot hand the last recipient its copy sooner than this, so the
 * crowd scenario prints it beside its latency.
 */
import { join } from "node:path";
import type { Socket } from "bun";

export interface FloorResult {
  recipients: number;
  /** Time to write one 300-byte frame to every recipient: median and 90th percentile of the rounds. */
  medianMs: number;
  p90Ms: number;
}

export async function fanoutFloor(recipients = 999, rounds = 40): Promise<FloorResult> {
  const accepted: Socket[] = [];
  let allIn!: () => void;
  const connected = new Promise<void>((resolve) => (allIn = resolve));
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.timeout(0);
        s.setNoDelay(true);
        if (accepted.push(s) === recipients) allIn();
      },
      data() {},
    },
  });
  const sink = Bun.spawn(
    [process.execPath, join(import.meta.dir, "sink.ts"), "127.0.0.1", String(server.port), String(recipients)],
    { stdout: "ignore", stderr: "inherit" },
  );
  try {
    await connected;
    const frame = new Uint8Array(300).fill(7);
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      for (const s of accepted) s.write(frame);
      if (r >= 5) times.push(performance.now() - t0); // the first rounds warm up
      await Bun.sleep(20);
    }
    times.sort((a, b) => a - b);
    return {
      recipients,
      medianMs: times[Math.floor(times.length / 2)]!,
      p90Ms: times[Math.floor(times.length * 0.9)]!,
    };
  } finally {
    sink.kill();
    server.stop(true);
  }
}

export interface Lateness {
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
}

/**
 * How late a 1 ms sleep wakes up. Every delivery needs at least three wake-ups
 * (sender, relay, receiver), so on a VM whose p99.9 is milliseconds, a relay's p99
 * under 2 ms depends on the neighbours as much as on the relay.
 */
export async function wakeupLateness(samples = 2000): Promise<Lateness> {
  const late = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await Bun.sleep(1);
    late[i] = performance.now() - t0 - 1;
  }
  late.sort();
  const q = (f: number) => late[Math.min(samples - 1, Math.floor(f * samples))]!;
  return { p50Ms: q(0.5), p99Ms: q(0.99), p999Ms: q(0.999) };
}

if (import.meta.main) {
  const r = await fanoutFloor(Number(process.argv[2] ?? 999));
  console.log(
    `one 300-byte write to each of ${r.recipients} loopback connections:` +
      ` median ${r.medianMs.toFixed(2)} ms, p90 ${r.p90Ms.toFixed(2)} ms`,
  );
  const w = await wakeupLateness();
  console.log(
    `a 1 ms sleep wakes late by: p50 ${w.p50Ms.toFixed(2)} ms,` +
      ` p99 ${w.p99Ms.toFixed(2)} ms, p99.9 ${w.p999Ms.toFixed(2)} ms`,
  );
}
