/**
 * The capacity scenario's half core (bench/limit.ts): the cgroup it makes really holds
 * a program to 50 ms of CPU per 100 ms, its counters read what the program used, and
 * removing it leaves nothing behind. Needs a writable cgroup hierarchy (root).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { choosePinning, imageAllocatorEnv, pinnedLimit } from "../../../bench/capacity.ts";
import { CPU_QUOTA_US, createLimit } from "../../../bench/limit.ts";
import { ROOT } from "../../support/paths.ts";

const name = `sova-test-limit-${process.pid}`;
const dir = join(ROOT, ".tmp", "limit-test");
const limit = createLimit(name, dir, "v1") ?? createLimit(name, dir, "v2");
const cgroup = limit !== null;
afterAll(() => limit?.remove());
if (!cgroup)
  console.warn(
    "SKIP tests/unit/bench/limit.test.ts: no writable cgroup here (run as root on a host with cgroup v1 or v2)",
  );

describe.skipIf(!cgroup)("the capacity scenario's limit", () => {
  test("a busy program in it is held to half a core, its CPU is counted, and removing it leaves nothing", async () => {
    // About 0.3 s of CPU, several quotas' worth.
    const busy = Bun.spawn(limit!.wrap(["/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"], name));
    const counters = limit!.counters(await limit!.programPid(busy.pid, name));
    expect(await busy.exited).toBe(0);
    const cpu = counters.cpuSeconds()!;
    const throttling = counters.throttling()!;
    expect(cpu).toBeGreaterThan(0.15);
    // Half a core: at most one quota per period it ran in, plus the period it started in. (Whether the
    // quota also throttled it depends on what else the machine runs: a busy machine gives it less.)
    expect(cpu * 1e6).toBeLessThanOrEqual((throttling.periods + 1) * CPU_QUOTA_US);
    const dirs =
      limit!.mode === "v1"
        ? ["cpu", "cpuacct", "memory"].map((c) => join("/sys/fs/cgroup", c, name))
        : [join("/sys/fs/cgroup", name)];
    const quota =
      limit!.mode === "v1"
        ? readFileSync(join(dirs[0]!, "cpu.cfs_quota_us"), "utf8").trim()
        : readFileSync(join(dirs[0]!, "cpu.max"), "utf8").trim().split(" ")[0];
    expect(quota).toBe(String(CPU_QUOTA_US));
    limit!.remove();
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  });
});

describe("the relay's environment in the capacity scenario", () => {
  test("is the allocator settings the image sets (Dockerfile.prebuilt), so the bench measures what ships", () => {
    expect(imageAllocatorEnv()).toEqual({ MIMALLOC_PURGE_DELAY: "1000", MIMALLOC_PURGE_HOLES: "0" });
  });
});

const pin = choosePinning(true);
if (pin === null)
  console.warn(
    "SKIP tests/unit/bench/limit.test.ts --one-core: fewer than 2 cores or no taskset (apt-get install util-linux)",
  );

describe.skipIf(pin === null)("the capacity scenario's --one-core", () => {
  test("runs the relay side on the first core alone and gives the generator the others; without it, nothing is pinned", async () => {
    expect(pin).toEqual({ relay: "0", generator: `1-${navigator.hardwareConcurrency - 1}` });
    expect(choosePinning(false)).toBeNull();
    const none = createLimit(`${name}-pin`, dir, "none")!;
    const cores = async (l: typeof none) => {
      const p = Bun.spawn(l.wrap(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"], "pin"), {
        stdout: "pipe",
      });
      const out = await new Response(p.stdout).text();
      await p.exited;
      return out.split(":")[1]!.trim();
    };
    expect(await cores(pinnedLimit(none, pin))).toBe("0");
    expect(await cores(pinnedLimit(none, null))).not.toBe("0");
  });
});
