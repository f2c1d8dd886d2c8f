/**
 * Starting a relay for a test: in this process (fast, and its state can be
 * looked at) or as a child process (the source through `bun`, or the compiled
 * binary), always on 127.0.0.1 with a port the OS picks.
 */
import type { Subprocess } from "bun";
import { connect, type ClientOptions, type RegisterOptions, type RelayClient } from "../../src/client.ts";
import { resolveConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { startServer, type RunningServer } from "../../src/server.ts";

export interface RelayHandle {
  readonly port: number;
  readonly logs: string[];
  /** Resolves with the first log line matching, past or future. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
  /** Only for in-process relays. */
  readonly server?: RunningServer;
  /** Only for child processes. */
  readonly process?: Subprocess<"ignore", "pipe", "pipe">;
}

export type StartRelay = (flags?: string[], env?: Record<string, string>) => Promise<RelayHandle>;

function logWatcher() {
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
  const config = resolveConfig(["--host", "127.0.0.1", "--port", "0", "--shutdown-timeout", "2", ...flags], env);
  const watcher = logWatcher();
  const log = createLogger({ level: "debug", format: config.logFormat, write: (line) => watcher.push(line) });
  const server = startServer(config, log);
  return {
    port: server.port,
    logs: watcher.logs,
    waitForLog: watcher.waitForLog,
    server,
    stop: () => server.shutdown("test finished"),
  };
};

/** A relay run as its own process: `command` is e.g. ["bun", "src/main.ts"] or ["dist/sova-relay"]. */
export function startProcess(command: string[]): StartRelay {
  return async (flags = [], env = {}) => {
    const watcher = logWatcher();
    const proc = Bun.spawn([...command, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--log-level", "debug", ...flags], {
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
    const port = Number(/:(\d+) \(|"port":(\d+)/.exec(line)!.slice(1).find(Boolean));
    return {
      port,
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
