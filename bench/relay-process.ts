/** The relay under test: a child process we start (binary or source), or one already running. */
import { existsSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { RelayClient } from "../src/client/client.ts";
import { connectWs } from "./ws-client.ts";

export interface BenchRelay {
  readonly host: string;
  readonly port: number;
  readonly label: string;
  /** Resident memory in MB, when the process is ours to read. */
  rssMb(): number | null;
  /** CPU seconds (user + system) the relay has used, when the process is ours to read. */
  cpuSeconds(): number | null;
  /** Warnings and errors the relay logged (empty for a relay we did not start). */
  readonly warnings: string[];
  /** How the generator's instances connect, when not over plain TCP to host:port. */
  connect?: () => Promise<RelayClient>;
  stop(): Promise<void>;
}

const ROOT = join(import.meta.dir, "..");

export function rssOf(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : null;
  } catch {
    return null;
  }
}

/** utime + stime from /proc/PID/stat; the kernel counts them in clock ticks of 1/100 s. */
export function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces; count fields after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

export function defaultBinary(): string | null {
  const bin = join(ROOT, "dist", "sova-relay");
  return existsSync(bin) ? bin : null;
}

/**
 * Every load comes from 127.0.0.1, so the per-address limits (which would refuse a
 * crowd from one address) are lifted unless `keepDefaults` asks for the relay as shipped.
 */
const ONE_ADDRESS_FLAGS = [
  "--max-connections-per-ip",
  "1000000",
  "--max-handshakes",
  "1000000",
  "--max-handshakes-per-ip",
  "1000000",
  "--max-registrations-per-ip",
  "1000000",
];

/** Options of this round that a binary from before it would refuse as unknown: given only to those that know them. */
const NEWER_ONE_ADDRESS_FLAGS = [["--max-instances-per-ip", "1000000"]];

const _known = new Map<string, string>();

/** The relay's --help, once per command: which options it knows. */
function helpOf(command: string[]): string {
  const key = command.join(" ");
  let text = _known.get(key);
  if (text === undefined) {
    const r = Bun.spawnSync([...command, "--help"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, NO_COLOR: "1" },
    });
    text = r.stdout.toString();
    _known.set(key, text);
  }
  return text;
}

/** Runs the relay inside something (a cgroup, a container: bench/limit.ts) instead of as a plain child. */
export interface RelayWrapper {
  command(relay: string[]): string[];
  /** The relay's own pid, given the spawned one. */
  pid(spawned: number): Promise<number>;
  /** CPU seconds charged to the relay (its cgroup's, for one). */
  cpuSeconds?(pid: number): number | null;
}

export async function launchRelay(options: {
  binary: string | null;
  /** Another program in the relay's place (it takes the same flags); overrides `binary`. */
  command?: string[];
  flags: string[];
  keepDefaults?: boolean;
  wrap?: RelayWrapper;
  /** The relay's environment (default: the bench's). */
  env?: Record<string, string | undefined>;
}): Promise<BenchRelay & { httpPort(): number | null; readonly pid: number }> {
  const command =
    options.command ?? (options.binary ? [options.binary] : [process.execPath, join(ROOT, "src/main.ts")]);
  const relaxed = options.keepDefaults
    ? []
    : [...ONE_ADDRESS_FLAGS, ...NEWER_ONE_ADDRESS_FLAGS.filter(([f]) => helpOf(command).includes(f!)).flat()];
  const wrap = options.wrap?.command ?? ((c: string[]) => c);
  const proc = Bun.spawn(
    wrap([
      ...command,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--http-port",
      "0",
      "--log-level",
      "warn",
      ...relaxed,
      ...options.flags,
    ]),
    {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      env: options.env,
    },
  );
  const pid = options.wrap ? await options.wrap.pid(proc.pid) : proc.pid;
  const cpu = options.wrap?.cpuSeconds ?? cpuSecondsOf;
  // The relay runs at warn so logging 5000 registrations does not skew the figures;
  // its port (chosen by the OS) is read from the kernel's socket table instead of a log line.
  const httpFlag = options.flags.lastIndexOf("--http-port");
  const httpPort = httpFlag >= 0 ? Number(options.flags[httpFlag + 1]) : 0;
  const warnings: string[] = [];
  void drain(proc.stderr, warnings);
  const port = await listeningPort(pid, new Set(httpPort > 0 ? [httpPort] : []));
  return {
    host: "127.0.0.1",
    port,
    pid,
    label: options.command
      ? options.command.join(" ")
      : options.binary
        ? `binary ${options.binary}`
        : "source (bun src/main.ts)",
    rssMb: () => rssOf(pid),
    cpuSeconds: () => cpu(pid),
    warnings,
    /** Known when the relay logs at info (its "Status page on" line). */
    httpPort() {
      for (const line of warnings) {
        const m = /Status page on http:\/\/[^/]*:(\d+)\//.exec(line);
        if (m) return Number(m[1]);
      }
      return null;
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

async function drain(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      into.push(line);
      if (process.env.BENCH_VERBOSE) process.stderr.write(`${line}\n`);
    }
  }
}

/**
 * Reads the child's listening TCP port from /proc (no log parsing, no fixed port): the first listening port of
 * `pid` that is not in `exclude` (a relay with its status page listens twice).
 */
export async function listeningPort(pid: number, exclude: ReadonlySet<number> = new Set()): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const inodes = socketInodes(pid);
    if (inodes.size > 0) {
      for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
        let table = "";
        try {
          table = readFileSync(file, "utf8");
        } catch {
          continue;
        }
        for (const line of table.split("\n").slice(1)) {
          const cols = line.trim().split(/\s+/);
          if (cols[3] !== "0A" || !inodes.has(cols[9]!)) continue;
          const port = parseInt(cols[1]!.split(":")[1]!, 16);
          if (!exclude.has(port)) return port;
        }
      }
    }
    await Bun.sleep(20);
  }
  throw new Error(`relay (pid ${pid}) did not start listening within 10 s`);
}

function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) out.add(m[1]!);
      } catch {}
    }
  } catch {}
  return out;
}

export function targetRelay(hostPort: string, pid?: number): BenchRelay {
  const [host, port] = hostPort.split(":");
  return {
    host: host || "127.0.0.1",
    port: Number(port),
    label: `running relay at ${hostPort}`,
    rssMb: () => (pid ? rssOf(pid) : null),
    cpuSeconds: () => (pid ? cpuSecondsOf(pid) : null),
    warnings: [],
    async stop() {},
  };
}

/** The other ways an instance reaches the relay, for the transport scenario. */
export type Transport = "tcp" | "ws" | "tunnel-tls" | "tunnel-ws";

const TLS_DIR = join(ROOT, "tests", "fixtures", "tls");

/** A port free right now, for listeners where the relay's 0 means "off". */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/**
 * The relay reached over `transport`: for the tunnels, the relay also listens for
 * TLS or WebSockets, and a `sova-relay tunnel` process (the player's side) sits
 * between the load generator and it, as on a player's machine.
 */
export async function launchVia(
  transport: Transport,
  options: { binary: string | null; flags: string[] },
): Promise<BenchRelay & { tunnelCpuSeconds(): number | null }> {
  if (transport === "tcp") return Object.assign(await launchRelay(options), { tunnelCpuSeconds: () => null });
  const upstream = freePort();
  if (transport === "ws") {
    const relay = await launchRelay({
      binary: options.binary,
      flags: [...options.flags, "--http-port", String(upstream)],
    });
    return {
      ...relay,
      label: `${relay.label} over WebSocket`,
      connect: () => connectWs(`ws://127.0.0.1:${upstream}/relay`),
      tunnelCpuSeconds: () => null,
    };
  }
  const extra =
    transport === "tunnel-tls"
      ? [
          "--tls-port",
          String(upstream),
          "--tls-cert",
          join(TLS_DIR, "test-a.crt"),
          "--tls-key",
          join(TLS_DIR, "test-a.key"),
        ]
      : ["--http-port", String(upstream)];
  const relay = await launchRelay({ binary: options.binary, flags: [...options.flags, ...extra] });
  const to = transport === "tunnel-tls" ? `tls://localhost:${upstream}` : `ws://127.0.0.1:${upstream}/relay`;
  const command = options.binary ? [options.binary] : [process.execPath, join(ROOT, "src/main.ts")];
  const tunnel = Bun.spawn(
    [
      ...command,
      "tunnel",
      "--listen",
      "127.0.0.1:0",
      "--to",
      to,
      "--ca",
      join(TLS_DIR, "test-a.crt"),
      "--log-level",
      "warn",
    ],
    {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    },
  );
  const port = await listeningPort(tunnel.pid);
  void drain(tunnel.stderr, relay.warnings);
  return {
    ...relay,
    port,
    label: `${relay.label} via sova-relay tunnel (${to})`,
    tunnelCpuSeconds: () => cpuSecondsOf(tunnel.pid),
    async stop() {
      tunnel.kill("SIGTERM");
      await tunnel.exited;
      await relay.stop();
    },
  };
}
