/**
 * Starting a relay for a test: in this process (fast, and its state can be
 * looked at) or as a child process (the source through `bun`, or the compiled
 * binary), always on 127.0.0.1 with a port the OS picks.
 */
import type { Subprocess } from "bun";
import { connect, type ClientOptions, type RegisterOptions, type RelayClient } from "../../src/client/client.ts";
import { resolveConfig } from "../../src/host/config.ts";
import { createLogger, type LogEvent, type LogFormat, type Logger, type LogLevel } from "../../src/lib/log.ts";
import { startRelay } from "../../src/host/relay.ts";
import type { RunningServer } from "../../src/host/start.ts";

/** One log line as the json format writes it. */
export interface LogRecord {
  time: string;
  level: LogLevel;
  event: LogEvent;
  msg: string;
  [field: string]: unknown;
}

export interface RelayHandle {
  readonly port: number;
  readonly tlsPort?: number | null;
  /**
   * The HTTP listener (status page, /relay WebSocket): in-process when the flags gave `--http-port`, a child's with
   * `--http-port any`.
   */
  readonly httpPort?: number | null;
  /** Lines as the relay wrote them (text, or json when asked). */
  readonly logs: string[];
  /** Every event logged so far, whatever the format of the lines. */
  readonly events: LogRecord[];
  /** Resolves with the first log line matching, past or future. Prefer waitForEvent: wording changes, names do not. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the first event of that name (whose fields match `where`, when given), past or future. */
  waitForEvent(
    event: LogEvent,
    where?: Partial<LogRecord> | ((e: LogRecord) => boolean),
    timeoutMs?: number,
  ): Promise<LogRecord>;
  stop(): Promise<void>;
  /** Only for in-process relays. */
  readonly server?: RunningServer;
  /** Only for child processes. */
  readonly process?: Subprocess<"ignore", "pipe", "pipe">;
}

export type StartRelay = (flags?: string[], env?: Record<string, string>) => Promise<RelayHandle>;

function matcher(event: LogEvent, where?: Partial<LogRecord> | ((e: LogRecord) => boolean)): (e: LogRecord) => boolean {
  if (typeof where === "function") return (e) => e.event === event && where(e);
  return (e) => e.event === event && Object.entries(where ?? {}).every(([k, v]) => e[k] === v);
}

export function logWatcher() {
  const logs: string[] = [];
  const events: LogRecord[] = [];
  const waiters: Array<{
    test: (line: string, record: LogRecord | null) => boolean;
    resolve: (line: string, record: LogRecord | null) => void;
  }> = [];

  function wait<T>(
    describe: string,
    find: () => T | undefined,
    test: (line: string, record: LogRecord | null) => boolean,
    pick: (line: string, record: LogRecord | null) => T,
    timeoutMs: number,
  ): Promise<T> {
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const timer = setTimeout(
      () => reject(new Error(`no ${describe} within ${timeoutMs} ms; got:\n${logs.join("")}`)),
      timeoutMs,
    );
    waiters.push({
      test,
      resolve: (line, record) => {
        clearTimeout(timer);
        resolve(pick(line, record));
      },
    });
    return promise;
  }

  return {
    logs,
    events,
    /** A finished line; json lines also give their event. */
    line(line: string) {
      logs.push(line);
      const record = line.trimStart().startsWith("{") ? (JSON.parse(line) as LogRecord) : null;
      if (record) events.push(record);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.test(line, record)) waiters.splice(i, 1)[0]!.resolve(line, record);
      }
    },
    /** An event from an in-process relay whose lines are text. */
    event(record: LogRecord) {
      events.push(record);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.test("", record)) waiters.splice(i, 1)[0]!.resolve("", record);
      }
    },
    waitForLog(pattern: RegExp, timeoutMs = 5000): Promise<string> {
      return wait(
        `log line matching ${pattern}`,
        () => logs.find((l) => pattern.test(l)),
        (line) => line !== "" && pattern.test(line),
        (line) => line,
        timeoutMs,
      );
    },
    waitForEvent(
      event: LogEvent,
      where?: Partial<LogRecord> | ((e: LogRecord) => boolean),
      timeoutMs = 5000,
    ): Promise<LogRecord> {
      const match = matcher(event, where);
      return wait(
        `'${event}' event${where ? " matching" : ""}`,
        () => events.find(match),
        (_, r) => r !== null && match(r),
        (_, r) => r!,
        timeoutMs,
      );
    },
  };
}

type Watcher = ReturnType<typeof logWatcher>;

/** The relay's logger, plus a json one feeding the events when the lines are text. */
function teeLogger(watcher: Watcher, format: LogFormat): Logger {
  const lines = createLogger({ level: "debug", format, write: (line) => watcher.line(line) });
  if (format === "json") return lines;
  const records = createLogger({
    level: "debug",
    format: "json",
    write: (line) => watcher.event(JSON.parse(line) as LogRecord),
  });
  const both =
    (level: LogLevel): Logger[LogLevel] =>
    (event, message, fields) => {
      lines[level](event, message, fields);
      records[level](event, message, fields);
    };
  return {
    error: both("error"),
    warn: both("warn"),
    info: both("info"),
    debug: both("debug"),
    trace: both("trace"),
    enabled: lines.enabled,
  };
}

/** `--port any`: with TLS on, `--port 0` would mean "no plain listener". */
export const startInProcess: StartRelay = async (flags = [], env = {}) => {
  const config = resolveConfig(["--host", "127.0.0.1", "--port", "any", "--shutdown-timeout", "2", ...flags], env);
  const watcher = logWatcher();
  const log = teeLogger(watcher, config.logFormat);
  // HTTP only when asked for, as most tests need no HTTP listener.
  const relay = await startRelay({ ...config, httpPort: flags.includes("--http-port") ? config.httpPort : null }, log, {
    version: "test",
  });
  const { server, http } = relay;
  return {
    port: server.port ?? server.tlsPort!,
    tlsPort: server.tlsPort,
    httpPort: http?.port,
    logs: watcher.logs,
    events: watcher.events,
    waitForLog: watcher.waitForLog,
    waitForEvent: watcher.waitForEvent,
    server,
    stop: () => relay.stop("test finished"),
  };
};

/**
 * A relay run as its own process: `command` is e.g. ["bun", "src/main.ts"] or
 * ["dist/sova-relay"]. It logs json unless the flags say otherwise (a later
 * --log-format wins), and picks its own ports; they are read from its
 * `listening` and `http_listening` events.
 */
export function startProcess(command: string[]): StartRelay {
  return async (flags = [], env = {}) => {
    const watcher = logWatcher();
    const proc = Bun.spawn(
      [
        ...command,
        "--host",
        "127.0.0.1",
        "--port",
        "any",
        "--http-port",
        "0",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        ...flags,
      ],
      {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, ...env },
      },
    );
    void (async () => {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of proc.stderr) {
        pending += decoder.decode(chunk, { stream: true });
        const lines = pending.split(/(?<=\n)/);
        pending = lines.at(-1)!.endsWith("\n") ? "" : lines.pop()!;
        for (const line of lines) watcher.line(line);
      }
    })();
    let listening = false;
    const exitedEarly = new Promise<never>((_, reject) => {
      void proc.exited.then((code) => {
        if (!listening) reject(new Error(`relay exited with ${code} before listening:\n${watcher.logs.join("")}`));
      });
    });
    const line = await Promise.race([
      watcher.waitForLog(/Listening on [^ ]+:(\d+)|"event":"listening"/, 15000),
      exitedEarly,
    ]);
    listening = true;
    const json = line.trimStart().startsWith("{");
    const record = json ? (JSON.parse(line) as LogRecord & { port: number | null; tls_port: number | null }) : null;
    const port = record ? (record.port ?? record.tls_port!) : Number(/Listening on [^ ]+?:(\d+)/.exec(line)![1]);
    // The HTTP listener starts before the relay logs `listening`.
    const http = json ? watcher.events.find((e) => e.event === "http_listening") : undefined;
    return {
      port,
      tlsPort: record?.tls_port,
      httpPort: (http?.port as number | undefined) ?? null,
      logs: watcher.logs,
      events: watcher.events,
      waitForLog: watcher.waitForLog,
      waitForEvent: watcher.waitForEvent,
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

  async register(
    name: string,
    options: Partial<RegisterOptions> & { client?: Partial<ClientOptions> } = {},
  ): Promise<RelayClient> {
    const c = await this.connect(options.client);
    await c.register({ name, ...options });
    return c;
  }

  closeAll(): void {
    for (const c of this.clients.splice(0)) c.close();
  }
}
