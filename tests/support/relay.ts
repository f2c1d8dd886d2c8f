/**
 * Starting a relay for a test: in this process (fast, and its state can be
 * looked at) or as a child process (the source through `bun`, or the compiled
 * binary), always on 127.0.0.1 with a port the OS picks.
 */
import type { Subprocess } from "bun";
import { connect, type ClientOptions, type RegisterOptions, type RelayClient } from "../../src/client.ts";
import { resolveConfig } from "../../src/config.ts";
import { startHttp } from "../../src/http.ts";
import { createLogger } from "../../src/log.ts";
import { createWebSocketEndpoint } from "../../src/net/websocket.ts";
import { startServer, type RunningServer } from "../../src/server.ts";

export interface RelayHandle {
  readonly port: number;
  readonly tlsPort?: number | null;
  /** The HTTP listener (status page, /relay WebSocket), when the flags gave `--http-port`. */
  readonly httpPort?: number;
  readonly logs: string[];
  /** Resolves with the first log line matching, past or future. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
  /** Only for in-process relays. */
  readonly server?: RunningServer;
  /** Only for child processes. */
  readonly process?: Subprocess<"ignore", "pipe", "pipe">;
}

/** A port free right now (bound and released): for listeners where 0 means "off". */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** With TLS on, `--port 0` means "no plain listener": give the plain one a real port unless the test chose. */
function plainPort(flags: string[]): string {
  return flags.includes("--tls-port") && !flags.includes("--port") ? String(freePort()) : "0";
}

export type StartRelay = (flags?: string[], env?: Record<string, string>) => Promise<RelayHandle>;

export function logWatcher() {
  const logs: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  return {
    logs,
    push(line: string) {
      logs.push(line);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pattern.test(line)) waiters.splice(i, 1)[0]!.resolve(line);
      }
    },
    waitForLog(pattern: RegExp, timeoutMs = 5000): Promise<string> {
      const found = logs.find((l) => pattern.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; got:\n${logs.join("")}`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

export const startInProcess: StartRelay = async (flags = [], env = {}) => {
  const config = resolveConfig(["--host", "127.0.0.1", "--port", plainPort(flags), "--shutdown-timeout", "2", ...flags], env);
  const watcher = logWatcher();
  const log = createLogger({ level: "debug", format: config.logFormat, write: (line) => watcher.push(line) });
  const server = startServer(config, log);
  // Started only when asked for, as most tests need no HTTP listener.
  const websocket = flags.includes("--http-port") ? createWebSocketEndpoint(config, server, log) : undefined;
  const http = websocket
    ? startHttp({ host: "127.0.0.1", port: config.httpPort, websocket }, { relay: server.relay, version: "test", startedAt: Date.now(), stopping: () => server.stopping, history: server.history }, log)
    : null;
  return {
    port: server.port ?? server.tlsPort!,
    tlsPort: server.tlsPort,
    httpPort: http?.port,
    logs: watcher.logs,
    waitForLog: watcher.waitForLog,
    server,
    async stop() {
      await server.shutdown("test finished");
      await websocket?.closed(1000);
      http?.stop();
    },
  };
};

/** A relay run as its own process: `command` is e.g. ["bun", "src/main.ts"] or ["dist/sova-relay"]. */
export function startProcess(command: string[]): StartRelay {
  return async (flags = [], env = {}) => {
    const watcher = logWatcher();
    const proc = Bun.spawn([...command, "--host", "127.0.0.1", "--port", plainPort(flags), "--http-port", "0", "--log-level", "debug", ...flags], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...env },
    });
    void (async () => {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of proc.stderr) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) !== -1) {
          watcher.push(pending.slice(0, nl + 1));
          pending = pending.slice(nl + 1);
        }
      }
    })();
    let listening = false;
    const exitedEarly = new Promise<never>((_, reject) => {
      void proc.exited.then((code) => {
        if (!listening) reject(new Error(`relay exited with ${code} before listening:\n${watcher.logs.join("")}`));
      });
    });
    const line = await Promise.race([watcher.waitForLog(/Listening on [^ ]+:(\d+)|"event":"listening"/, 15000), exitedEarly]);
    listening = true;
    const httpLine = flags.includes("--http-port") ? await watcher.waitForLog(/Status page on http:\/\/[^ ]+:(\d+)\/|"event":"http_listening"/, 15000) : null;
    const httpPort = httpLine === null ? undefined : httpLine.trimStart().startsWith("{") ? (JSON.parse(httpLine) as { port: number }).port : Number(/:(\d+)\//.exec(httpLine)![1]);
    const port = line.trimStart().startsWith("{")
      ? ((JSON.parse(line) as { port: number | null; tls_port: number | null }).port ?? JSON.parse(line).tls_port)
      : Number(/Listening on [^ ]+?:(\d+)/.exec(line)![1]);
    return {
      port,
      httpPort,
      logs: watcher.logs,
      waitForLog: watcher.waitForLog,
      process: proc,
      async stop() {
        proc.kill("SIGTERM");
        await proc.exited;
      },
    };
  };
}

/** Clients opened by one test, closed after it whatever happened. */
export class ClientPool {
  private readonly clients: RelayClient[] = [];
  constructor(private readonly port: () => number) {}

  async connect(options: Partial<ClientOptions> = {}): Promise<RelayClient> {
    const c = await connect({ port: this.port(), ...options });
    this.clients.push(c);
    return c;
  }

  async register(name: string, options: Partial<RegisterOptions> & { client?: Partial<ClientOptions> } = {}): Promise<RelayClient> {
    const c = await this.connect(options.client);
    await c.register({ name, ...options });
    return c;
  }

  closeAll(): void {
    for (const c of this.clients.splice(0)) c.close();
  }
}
