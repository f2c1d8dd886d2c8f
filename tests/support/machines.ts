/**
 * Small "machines" for running the docs' recipes exactly as written: each is a network
 * namespace with a mount namespace of its own, so a recipe gets the default ports (9090,
 * 8080, 443, 4222) without meeting anything else on this host, and its own view of /etc,
 * /usr/local, /var, /run and /root (overlays over the host's, thrown away at the end): a
 * certificate at /etc/letsencrypt/live/..., names in /etc/hosts (relay.example.org), a
 * binary installed into /usr/local/bin. Machines of one set share a switch (a bridge in a
 * namespace of its own) and know each other by name. Needs root; nothing on the host changes.
 */
import type { Subprocess } from "bun";
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./paths.ts";
import { lineOrEnd, type Result, runCommand, watchOutput } from "./lines.ts";

const OVERLAID = ["/etc", "/usr/local", "/var", "/run", "/root"];
const BASE_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
  TERM: "dumb",
};

/** Why machines cannot run here, or null. */
export function machinesSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "they need root (network and mount namespaces); run the suite as root";
  for (const tool of ["unshare", "nsenter", "ip"])
    if (!Bun.which(tool, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }))
      return `${tool} is not installed (apt-get install util-linux iproute2)`;
  return null;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Given on stdin. */
  input?: string;
  timeoutMs?: number;
}

export interface Service {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Lines from stdout and stderr as they come. */
  readonly logs: string[];
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface Machine {
  readonly name: string;
  readonly ip: string;
  readonly pid: number;
  /** A shell script (bash -e -o pipefail) run as root on the machine, with a clean environment. */
  run(script: string, options?: RunOptions): Promise<Result>;
  /** A long-running script (a relay, nginx); stopped with the machine at the latest. */
  start(script: string, options?: RunOptions): Service;
  write(path: string, content: string, mode?: string): Promise<void>;
}

/** Entering a mount namespace moves to its root: the working directory is given again (the project by default). */
function command(pid: number, script: string, options: RunOptions = {}): string[] {
  const pairs = Object.entries({ ...BASE_ENV, ...options.env }).map(([k, v]) => `${k}=${v}`);
  const wd = `--wd=${options.cwd ?? ROOT}`;
  return [
    "nsenter",
    "-t",
    String(pid),
    "-m",
    "-n",
    wd,
    "--",
    "env",
    "-i",
    ...pairs,
    "bash",
    "-e",
    "-o",
    "pipefail",
    "-c",
    script,
  ];
}

async function holder(args: string[], setup: string): Promise<{ proc: Subprocess; pid: number }> {
  const proc = Bun.spawn(
    ["unshare", ...args, "--fork", "--kill-child", "--", "bash", "-e", "-c", `${setup}\necho $$\nexec sleep infinity`],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const reader = proc.stdout.getReader();
  let first = "";
  while (!first.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    first += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const pid = Number(first.trim());
  if (!pid) throw new Error(`unshare ${args.join(" ")} did not start: ${await new Response(proc.stderr).text()}`);
  return { proc, pid };
}

function netnsOf(pid: number | string): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/** Every process in the network namespace of `pid` (what the machine started), killed. */
function killNamespace(pid: number): void {
  const ns = netnsOf(pid);
  if (!ns) return;
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    if (netnsOf(p) === ns) {
      try {
        process.kill(Number(p), "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }
}

function exec(argv: string[], options: RunOptions = {}): Promise<Result> {
  return runCommand(argv, { input: options.input, timeoutMs: options.timeoutMs });
}

async function must(argv: string[]): Promise<void> {
  const r = await exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
}

export interface MachineSet {
  readonly machines: Machine[];
  get(name: string): Machine;
  stop(): Promise<void>;
}

/** Machines by these names, on one switch, each with the others in its /etc/hosts. */
export async function startMachines(names: string[]): Promise<MachineSet> {
  const dir = mkdtempSync(join(ROOT, ".tmp", "machines-"));
  const holders: Array<{ proc: Subprocess; pid: number }> = [];
  const services: Service[] = [];
  const machines: Machine[] = [];
  try {
    const sw = await holder(["--net"], "ip link set lo up; ip link add br0 type bridge; ip link set br0 up");
    holders.push(sw);
    for (const [i, name] of names.entries()) {
      const mounts = OVERLAID.map((d) => {
        const base = join(dir, String(i), d.replaceAll("/", "_"));
        return `mkdir -p ${base}/u ${base}/w && mount -t overlay overlay -o lowerdir=${d},upperdir=${base}/u,workdir=${base}/w ${d}`;
      }).join("\n");
      const h = await holder(["--mount", "--net", "--propagation", "private"], `ip link set lo up\n${mounts}`);
      holders.push(h);
      const ip = `10.0.0.${i + 1}`;
      await must([
        "nsenter",
        "-t",
        String(sw.pid),
        "-n",
        "ip",
        "link",
        "add",
        `p${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        String(h.pid),
      ]);
      await must(["nsenter", "-t", String(sw.pid), "-n", "ip", "link", "set", `p${i}`, "master", "br0", "up"]);
      await must([
        "nsenter",
        "-t",
        String(h.pid),
        "-n",
        "sh",
        "-c",
        `ip addr add ${ip}/24 dev eth0 && ip link set eth0 up`,
      ]);
      machines.push(machine(name, ip, h.pid, services));
    }
    const hosts = `127.0.0.1 localhost\n::1 localhost\n${machines.map((m) => `${m.ip} ${m.name}`).join("\n")}\n`;
    for (const m of machines) await m.write("/etc/hosts", hosts);
  } catch (error) {
    for (const h of holders) killNamespace(h.pid);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    machines,
    get(name) {
      const m = machines.find((x) => x.name === name);
      if (!m) throw new Error(`no machine ${name}`);
      return m;
    },
    async stop() {
      await Promise.all(services.map((s) => s.stop("SIGTERM")));
      for (const h of holders) killNamespace(h.pid);
      await Promise.all(holders.map((h) => h.proc.exited));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function machine(name: string, ip: string, pid: number, services: Service[]): Machine {
  return {
    name,
    ip,
    pid,
    run(script, options = {}) {
      return exec(command(pid, script, options), options);
    },
    start(script, options = {}) {
      const proc = Bun.spawn(command(pid, script, options), {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const output = watchOutput([proc.stdout, proc.stderr]);
      const service: Service = {
        proc,
        logs: output.watcher.logs,
        waitForLog: (pattern, timeoutMs = 15_000) => lineOrEnd(output, pattern, name, timeoutMs),
        async stop(signal = "SIGTERM") {
          if (proc.exitCode === null) proc.kill(signal);
          return proc.exited;
        },
      };
      services.push(service);
      return service;
    },
    async write(path, content, mode = "0644") {
      const script = `mkdir -p "$(dirname "$P")" && cat > "$P" && chmod ${mode} "$P"`;
      const r = await exec(command(pid, script, { env: { P: path } }), { input: content });
      if (r.code !== 0) throw new Error(`${name}: cannot write ${path}: ${r.stderr}`);
    },
  };
}
