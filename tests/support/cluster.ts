/**
 * Clusters for tests: real nats-server processes (Debian's package; `.ci/run`
 * installs it) and relay nodes on loopback, in this process (their state can be
 * looked at). Each test file makes one kit and calls its cleanup after each test.
 */
import { describe } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { connect, type RelayClient } from "../../src/client/client.ts";
import type { ClusterNode } from "../../src/cluster/node.ts";
import { clusterFromConfig } from "../../src/host/cluster.ts";
import { resolveConfig } from "../../src/host/config.ts";
import { startServer, type RunningServer } from "../../src/host/start.ts";
import { createLogger, type LogEvent } from "../../src/lib/log.ts";
import { unusedPort } from "./ports.ts";
import { type LogRecord, logWatcher } from "./relay.ts";

export type { LogRecord } from "./relay.ts";

export const NATS =
  Bun.which("nats-server") ??
  ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => Bun.file(p).size > 0) ??
  null;

/** `describe`, or `describe.skip` after one loud line when nats-server is missing. */
export function describeWithNats(file: string): typeof describe | typeof describe.skip {
  if (NATS) return describe;
  console.warn(`SKIP: ${file} because nats-server is not installed (apt-get install nats-server; .ci/run does it)`);
  return describe.skip;
}

export interface Nats {
  port: number;
  url: string;
  proc: Subprocess<"ignore", "ignore", "pipe">;
  /** Resolves once the server says it is ready. */
  ready: Promise<void>;
  /**
   * SIGSTOP, resolved once every thread of the server has stopped: on a busy VM a thread may go on
   * for milliseconds after the signal, and answer what was sent after it.
   */
  pause(): Promise<void>;
  stop(): Promise<void>;
}

export interface Node {
  name: string;
  port: number;
  server: RunningServer;
  link: ClusterNode;
  logs: string[];
  /** The first event of this name (past or future) that `where` accepts. */
  waitForEvent(event: LogEvent, where?: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  stop(): Promise<void>;
}

/** Resolves once `cond` holds. */
export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}

/** What /metrics would say for a node in this process. */
export async function renderMetricsOf(node: Node): Promise<string> {
  const { createMetrics } = await import("../../src/http/metrics.ts");
  const metrics = await createMetrics({
    relay: node.server.relay,
    version: "t",
    startedAt: Date.now(),
    stopping: () => false,
    cluster: node.link.status,
  });
  return metrics.render();
}

export function clusterKit() {
  const toStop: Array<() => Promise<void> | void> = [];
  const clients: RelayClient[] = [];

  function startNats(
    port = unusedPort(),
    storeDir = mkdtempSync(join(tmpdir(), "sova-nats-")),
    extra: string[] = [],
    jetstream = true,
  ): Nats {
    const proc = Bun.spawn(
      [NATS!, "-a", "127.0.0.1", "-p", String(port), ...(jetstream ? ["-js", "-sd", storeDir] : []), ...extra],
      { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    const ready = (async () => {
      let text = "";
      for await (const chunk of proc.stderr) {
        text += new TextDecoder().decode(chunk);
        if (text.includes("Server is ready")) return;
      }
      throw new Error(`nats-server exited before it was ready:\n${text}`);
    })();
    const nats: Nats = {
      port,
      url: `nats://127.0.0.1:${port}`,
      proc,
      ready,
      async pause() {
        proc.kill("SIGSTOP");
        await until(() => allStopped(proc.pid));
      },
      async stop() {
        proc.kill("SIGKILL");
        await proc.exited;
      },
    };
    toStop.push(async () => {
      await nats.stop();
      rmSync(storeDir, { recursive: true, force: true });
    });
    return nats;
  }

  /** A relay node in this process; it returns once it may admit registrations. */
  async function startNode(
    nats: Nats | string,
    name: string,
    flags: string[] = [],
    env: Record<string, string> = {},
    tuning: Parameters<typeof clusterFromConfig>[2] = {},
  ): Promise<Node> {
    const url = typeof nats === "string" ? nats : nats.url;
    const config = resolveConfig(
      [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--shutdown-timeout",
        "1",
        "--cluster",
        url,
        "--node-name",
        name,
        ...flags,
      ],
      env,
    );
    const watcher = logWatcher();
    const log = createLogger({ level: "debug", format: "json", write: (line) => watcher.line(line) });
    const link = await clusterFromConfig(config, log, tuning);
    const server = startServer(config, log, link);
    let stopped = false;
    const node: Node = {
      name,
      port: server.port!,
      server,
      link,
      logs: watcher.logs,
      waitForEvent: (event, where, timeoutMs) => watcher.waitForEvent(event, where, timeoutMs),
      async stop() {
        if (stopped) return;
        stopped = true;
        await server.shutdown("test finished");
      },
    };
    toStop.push(() => node.stop());
    return node;
  }

  /** Nodes connected and each having heard every other. */
  async function cluster(nats: Nats, names: string[], flags: (name: string) => string[] = () => []): Promise<Node[]> {
    await nats.ready;
    const nodes = await Promise.all(names.map((n) => startNode(nats, n, flags(n))));
    await Promise.all(nodes.map((n) => n.waitForEvent("cluster_connected")));
    for (const n of nodes)
      for (const other of names) if (other !== n.name) await n.waitForEvent("cluster_node_up", (r) => r.node === other);
    return nodes;
  }

  async function join_(
    port: number,
    name: string,
    capabilities: string[] = [],
    token: string | null = null,
  ): Promise<RelayClient> {
    const c = await connect({ port });
    clients.push(c);
    await c.register({ name, capabilities, token });
    return c;
  }

  /** A directory removed after the test. */
  function tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    toStop.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  return {
    startNats,
    startNode,
    cluster,
    join: join_,
    tempDir,
    clients,
    /** Stopped after the test, last first. */
    track(stop: () => Promise<void> | void) {
      toStop.push(stop);
    },
    async cleanup() {
      for (const c of clients.splice(0)) c.close();
      for (const stop of toStop.splice(0).reverse()) await stop();
    },
  };
}

/** Every thread of `pid` stopped by a signal (state T in /proc). */
function allStopped(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
    });
  } catch {
    return false;
  }
}
