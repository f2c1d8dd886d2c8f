/**
 * Half a core and 256 MB, as the README's compose file gives the relay: a cgroup the
 * bench makes and removes (v1 where the cpu and memory hierarchies are mounted apart,
 * v2 on a unified mount), or, where neither can be written, podman with
 * `--cpus 0.5 --memory 256m`. The relay (and the bare-write floor) run inside; the
 * load generator stays outside. CPU and throttling are read from the cgroup the
 * process is in (/proc/PID/cgroup), whichever way it got there.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpuSecondsOf } from "./relay-process.ts";

export type LimitMode = "v1" | "v2" | "podman" | "none";

export const CPU_QUOTA_US = 50_000;
export const CPU_PERIOD_US = 100_000;
export const MEMORY_BYTES = 256 * 1024 * 1024;

export interface Limit {
  readonly mode: LimitMode;
  /** One line for the output: what limits the relay, and where. */
  readonly describe: string;
  /** The command that runs `command` inside the limit. */
  wrap(command: string[], name: string): string[];
  /** The pid of the program itself, given the pid the bench spawned (podman's client for podman). */
  programPid(spawned: number, name: string): Promise<number>;
  /**
   * The counters of the program `pid` runs in, found now and read later: CPU seconds (its cgroup's counter; /proc
   * for `none`) and the quota's effect (null without one). Read after the program exits, its cgroup's still count.
   */
  counters(pid: number): Counters;
  /** Removes what `create` made (a cgroup; podman removes its own); false when it could not (still in use). */
  remove(): boolean;
}

export interface Counters {
  cpuSeconds(): number | null;
  throttling(): Throttling | null;
}

const counters = { counters: cgroupCounters };

const V1_ROOT = "/sys/fs/cgroup";
const V1_CONTROLLERS = ["cpu", "cpuacct", "memory"] as const;

function tryWrite(path: string, value: string): boolean {
  try {
    writeFileSync(path, value);
    return true;
  } catch {
    return false;
  }
}

/** Enters the cgroups named by the arguments before the first "--", then execs the rest. */
const ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"';

function cgroupV1(name: string): Limit | null {
  const dirs = V1_CONTROLLERS.map((c) => join(V1_ROOT, c, name));
  const [cpuDir, , memoryDir] = dirs as [string, string, string];
  if (!V1_CONTROLLERS.every((c) => existsSync(join(V1_ROOT, c, "cgroup.procs")))) return null;
  if (!existsSync(join(V1_ROOT, "cpu", "cpu.cfs_quota_us"))) return null;
  try {
    for (const d of dirs) mkdirSync(d);
  } catch {
    dirs.forEach(rmQuietly);
    return null;
  }
  const ok =
    tryWrite(join(cpuDir, "cpu.cfs_period_us"), String(CPU_PERIOD_US)) &&
    tryWrite(join(cpuDir, "cpu.cfs_quota_us"), String(CPU_QUOTA_US)) &&
    tryWrite(join(memoryDir, "memory.limit_in_bytes"), String(MEMORY_BYTES));
  if (!ok) {
    dirs.forEach(rmQuietly);
    return null;
  }
  const procs = dirs.map((d) => join(d, "cgroup.procs"));
  return {
    mode: "v1",
    ...counters,
    describe:
      `cgroup v1 ${name}: cpu.cfs_quota_us=${CPU_QUOTA_US} cpu.cfs_period_us=${CPU_PERIOD_US},` +
      ` memory.limit_in_bytes=256M (made and removed by the bench)`,
    wrap: (command) => ["/bin/sh", "-c", ENTER, "sh", ...procs, "--", ...command],
    programPid: (spawned) => entered(spawned, name, V1_CONTROLLERS.length),
    remove: () => dirs.map(rmQuietly).every(Boolean),
  };
}

/**
 * Resolves once `pid` is in the cgroup `name` of `hierarchies` hierarchies (the wrapper enters them one by one,
 * then execs the program; until the fork's exec its argv is still the bench's, so that cannot be the sign).
 */
async function entered(pid: number, name: string, hierarchies: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
      if (lines.filter((l) => l.endsWith(`:/${name}`)).length >= hierarchies) return pid;
    } catch {}
    await Bun.sleep(5);
  }
  throw new Error(`process ${pid} did not enter the cgroup ${name} within 10 s`);
}

/** The unified hierarchy's mount point, when it is the only one (a v2 host). */
function v2Root(): string | null {
  try {
    const controllers = readFileSync(join(V1_ROOT, "cgroup.controllers"), "utf8").split(/\s+/);
    return controllers.includes("cpu") && controllers.includes("memory") ? V1_ROOT : null;
  } catch {
    return null;
  }
}

function cgroupV2(name: string): Limit | null {
  const root = v2Root();
  if (root === null) return null;
  // The root must hand cpu and memory down to its children (systemd hosts usually do already).
  tryWrite(join(root, "cgroup.subtree_control"), "+cpu +memory");
  const dir = join(root, name);
  try {
    mkdirSync(dir);
  } catch {
    return null;
  }
  if (
    !tryWrite(join(dir, "cpu.max"), `${CPU_QUOTA_US} ${CPU_PERIOD_US}`) ||
    !tryWrite(join(dir, "memory.max"), String(MEMORY_BYTES))
  ) {
    rmQuietly(dir);
    return null;
  }
  return {
    mode: "v2",
    ...counters,
    describe: `cgroup v2 ${dir}: cpu.max="${CPU_QUOTA_US} ${CPU_PERIOD_US}", memory.max=256M (made and removed by the bench)`,
    wrap: (command) => ["/bin/sh", "-c", ENTER, "sh", join(dir, "cgroup.procs"), "--", ...command],
    programPid: (spawned) => entered(spawned, name, 1),
    remove: () => rmQuietly(dir),
  };
}

function podman(workDir: string): Limit | null {
  if (!Bun.which("podman")) return null;
  // Hybrid cgroups refuse crun; podman's default ulimits exceed many hosts'. Nothing under /etc is edited.
  mkdirSync(workDir, { recursive: true });
  const conf = join(workDir, "containers.conf");
  writeFileSync(
    conf,
    '[containers]\ndefault_ulimits = ["nofile=65536:65536", "nproc=8192:8192"]\n' +
      `[engine]\nruntime = "${Bun.which("runc") ? "runc" : "crun"}"\n`,
  );
  process.env.CONTAINERS_CONF = conf;
  return {
    mode: "podman",
    ...counters,
    describe:
      "podman run --cpus 0.5 --memory 256m --network host, the host's / as an overlay root" +
      " (no cgroup could be written here)",
    // The host's root as a throw-away overlay: the same binary, no image to build or pull.
    wrap: (command, name) => [
      "podman",
      "run",
      "--rm",
      "--name",
      name,
      "--network",
      "host",
      "--cpus",
      "0.5",
      "--memory",
      "256m",
      "--rootfs",
      "/:O",
      ...command,
    ],
    async programPid(_spawned, name) {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const out = Bun.spawnSync(["podman", "inspect", "--format", "{{.State.Pid}}", name], { stderr: "ignore" });
        const pid = Number(out.stdout.toString().trim());
        if (out.exitCode === 0 && pid > 0) return pid;
        await Bun.sleep(100);
      }
      throw new Error(`podman container ${name} did not start within 30 s`);
    },
    remove: () => true,
  };
}

/** For comparison only (`--limit none`): the relay at full speed, CPU from /proc. */
function unlimited(): Limit {
  return {
    mode: "none",
    counters: (pid) => ({ cpuSeconds: () => cpuSecondsOf(pid), throttling: () => null }),
    describe: "no limit (--limit none): the relay at full speed, for comparison",
    wrap: (command) => command,
    programPid: async (spawned) => spawned,
    remove: () => true,
  };
}

/** True when `dir` is gone. */
function rmQuietly(dir: string): boolean {
  try {
    rmdirSync(dir);
  } catch {}
  return !existsSync(dir);
}

/** The first way that works, or the one asked for; null when none does. */
export function createLimit(name: string, workDir: string, wanted?: LimitMode): Limit | null {
  const makers: Record<LimitMode, () => Limit | null> = {
    none: () => unlimited(),
    v1: () => cgroupV1(name),
    v2: () => cgroupV2(name),
    podman: () => podman(workDir),
  };
  if (wanted) return makers[wanted]();
  return makers.v1() ?? makers.v2() ?? makers.podman();
}

/** A controller's directory for `pid`, from /proc/PID/cgroup (v1: by controller name; v2: the unified line). */
function cgroupDir(pid: number, controller: string): string | null {
  let lines: string[];
  try {
    lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n");
  } catch {
    return null;
  }
  for (const line of lines) {
    const [, controllers, path] = line.split(":", 3) as [string, string, string];
    if (controllers.split(",").includes(controller)) {
      const dir = join(V1_ROOT, controllers, path);
      if (existsSync(dir)) return dir;
    }
  }
  const unified = lines.find((l) => l.startsWith("0::"));
  if (unified === undefined) return null;
  for (const root of [V1_ROOT, join(V1_ROOT, "unified")]) {
    const dir = join(root, unified.slice(3));
    if (existsSync(join(dir, "cpu.stat"))) return dir;
  }
  return null;
}

function statField(text: string, key: string): number | null {
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : null;
}

export interface Throttling {
  periods: number;
  throttled: number;
  throttledMs: number;
}

function readOr<T>(path: string, parse: (text: string) => T | null): T | null {
  try {
    return parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
}

/** Everything in `pid`'s cgroup: cpuacct.usage (v1) or cpu.stat usage_usec (v2); cpu.stat's throttling. */
function cgroupCounters(pid: number): Counters {
  const acct = cgroupDir(pid, "cpuacct");
  const cpu = cgroupDir(pid, "cpu");
  return {
    cpuSeconds() {
      if (acct !== null && existsSync(join(acct, "cpuacct.usage")))
        return readOr(join(acct, "cpuacct.usage"), (t) => Number(t) / 1e9);
      if (cpu === null) return null;
      return readOr(join(cpu, "cpu.stat"), (t) => {
        const usec = statField(t, "usage_usec");
        return usec === null ? null : usec / 1e6;
      });
    },
    throttling() {
      if (cpu === null) return null;
      return readOr(join(cpu, "cpu.stat"), (text) => {
        const periods = statField(text, "nr_periods");
        const throttled = statField(text, "nr_throttled");
        const ns = statField(text, "throttled_time");
        const us = statField(text, "throttled_usec");
        if (periods === null || throttled === null) return null;
        return { periods, throttled, throttledMs: ns !== null ? ns / 1e6 : (us ?? 0) / 1e3 };
      });
    },
  };
}

export function throttlingSince(now: Throttling | null, before: Throttling | null): Throttling | null {
  if (now === null || before === null) return now;
  return {
    periods: now.periods - before.periods,
    throttled: now.throttled - before.throttled,
    throttledMs: now.throttledMs - before.throttledMs,
  };
}
