/**
 * The `hostile` scenario (issue 12): a paced sender -> receiver pair in its own
 * session keeps playing while every attack of bench/attackers.ts runs against the
 * relay with its default limits. Prints the pair's loss and p99, the relay's peak
 * RSS, how fresh registrations fared during the attack, and how many attackers
 * were cut and why (from /status).
 */
import { join } from "node:path";
import { connect } from "../src/client/client.ts";
import { connectPool, runPhase, type PhaseResult } from "./load.ts";
import { launchRelay, type BenchRelay } from "./relay-process.ts";
import type { SpectatorReport, Watching } from "./spectators.ts";

export const PAIR_TOKEN = "bench-pair-session-token-0123456789";
const ATTACK_TOKEN = "bench-attack-session-token-0123456789";

export interface HostileResult {
  pair: PhaseResult;
  peakRssMb: number | null;
  /** Fresh connect+register+leave from a player during the attack. */
  probes: { ok: number; failed: number; p99Ms: number };
  attacks: Record<string, number>;
  cut: Record<string, number>;
  refused: Record<string, number>;
  spectators?: SpectatorReport;
}

async function statusOf(relay: BenchRelay & { httpPort(): number | null }): Promise<{
  totals: {
    disconnects: Record<string, number>;
    registrations_rejected: Record<string, number>;
    connections_refused: number;
  };
} | null> {
  const port = relay.httpPort();
  if (port === null) return null;
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as never;
  } catch {
    return null;
  }
}

/** A port free right now. Only the benchmark does this (--http-port 0 means "off"); tests never do. */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** `watch` (`--spectators`): spectators and an editor on the pair's session (bench/spectators.ts). */
export async function runHostile(binary: string | null, durationS: number, watch?: Watching): Promise<HostileResult> {
  const relay = await launchRelay({
    binary,
    flags: [
      ...(watch?.flags ?? []),
      "--token",
      PAIR_TOKEN,
      "--token",
      ATTACK_TOKEN,
      "--history",
      "1000",
      "--log-level",
      "info",
      "--http-port",
      String(freePort()),
    ],
    keepDefaults: true,
  });
  try {
    const pool = await connectPool(relay, 2, { tokens: [PAIR_TOKEN] });
    const stopWatching = await watch?.start(relay);
    const attackers = Bun.spawn(
      [
        process.execPath,
        join(import.meta.dir, "attackers.ts"),
        "--port",
        String(relay.port),
        "--token",
        ATTACK_TOKEN,
        "--duration",
        String(durationS + 2),
      ],
      {
        stdout: "pipe",
        stderr: "inherit",
      },
    );
    const attackReport = new Response(attackers.stdout).text();
    // Players joining while it goes on: each must get in.
    const probeTimes: number[] = [];
    let probeFailed = 0;
    let probing = true;
    const prober = (async () => {
      for (let i = 0; probing; i++) {
        const t0 = performance.now();
        try {
          const c = await connect({ port: relay.port, connectTimeoutMs: 5000 });
          await c.register({ name: `probe${i}`, token: PAIR_TOKEN });
          c.close();
          probeTimes.push(performance.now() - t0);
        } catch {
          probeFailed++;
        }
        await Bun.sleep(250);
      }
    })();
    const pair = await runPhase(pool, { senders: 1, rate: 50, durationS, payload: 256 });
    const spectators = await stopWatching?.();
    probing = false;
    await prober;
    const attacks = JSON.parse((await attackReport).trim().split("\n").pop() || "{}") as Record<string, number>;
    await attackers.exited;
    const status = await statusOf(relay);
    pool.close();
    probeTimes.sort((a, b) => a - b);
    return {
      pair,
      peakRssMb: pair.rssMb.peak,
      probes: {
        ok: probeTimes.length,
        failed: probeFailed,
        p99Ms: probeTimes[Math.floor(probeTimes.length * 0.99)] ?? NaN,
      },
      attacks,
      cut: status?.totals.disconnects ?? {},
      refused: { ...(status?.totals.registrations_rejected ?? {}), at_accept: status?.totals.connections_refused ?? 0 },
      spectators,
    };
  } finally {
    await relay.stop();
  }
}
