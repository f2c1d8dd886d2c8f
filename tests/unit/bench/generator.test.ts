/**
 * The load generator spread over processes (the capacity scenario's --generator-processes):
 * instances in receiver processes must send on the same schedule as the generator's own,
 * or a run measures fewer senders than it claims; every edit is counted sent, delivered to
 * every other member once, in order.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { connectPool, runPhase } from "../../../bench/load.ts";
import type { BenchRelay } from "../../../bench/relay-process.ts";
import { ROOT } from "../../support/paths.ts";
import { startInProcess } from "../../support/relay.ts";

const relay = await startInProcess(["--rate-limit", "0", "--nudge-interval", "0"]);
afterAll(() => relay.stop());

const target: BenchRelay = {
  host: "127.0.0.1",
  port: relay.port,
  label: "in-process",
  rssMb: () => null,
  cpuSeconds: () => null,
  warnings: [],
  stop: async () => {},
};

describe("the load generator over several processes", () => {
  test("instances in receiver processes send too, in phase with the generator's own; nothing lost", async () => {
    const pool = await connectPool(target, 6, { receiverProcesses: 2, local: 2 });
    try {
      expect(pool.clients.length).toBe(2);
      const r = await runPhase(pool, { senders: 6, rate: 20, durationS: 0.5, payload: 32, phase: () => 0 });
      // 20 a second for half a second: 9 or 10 edits from each of the six, not only from the two here.
      expect(r.sent).toBeGreaterThanOrEqual(6 * 9);
      expect(r.sent).toBeLessThanOrEqual(6 * 10);
      expect(r.expected).toBe(r.sent * 5);
      expect(r.delivered).toBe(r.expected);
      expect(r.lost).toBe(0);
      expect(r.outOfOrder).toBe(0);
    } finally {
      pool.close();
    }
  }, 20_000);
});

describe("--generator-processes", () => {
  test("anything but a whole number from 1 to 99 stops the bench with one line and exit 2", async () => {
    for (const bad of ["0", "abc", "1.5", "100"]) {
      const run = Bun.spawn(
        [
          process.execPath,
          "bench/run.ts",
          "--scenario",
          "capacity",
          "--generator-processes",
          bad,
          "--binary",
          "/bin/true",
        ],
        { cwd: ROOT, stdout: "ignore", stderr: "pipe" },
      );
      expect(await run.exited).toBe(2);
      expect(await new Response(run.stderr).text()).toContain(
        `bench: --generator-processes must be a whole number from 1 to 99, not '${bad}'`,
      );
    }
  }, 20_000);
});
