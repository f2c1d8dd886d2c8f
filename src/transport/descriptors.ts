/**
 * File descriptors running out, made visible. 20,000 idle HTTP connections
 * (Bun.serve has no connection cap) used every descriptor the process had: new
 * registrations, WebSocket joins and /healthz got no answer, and not one line
 * said why.
 *
 * Bun reports nothing then: its accept() fails with EMFILE inside uSockets,
 * which neither calls a handler nor backs off (it retries at once, taking a
 * core; oven-sh/bun#32705), and the connections wait in the kernel's accept
 * queue. Measured under Bun 1.4.5 with `ulimit -n 64`: no error callback, no
 * exception, the listener's queue growing. So the relay looks for itself, once
 * a second: it opens /dev/null, and when that fails with EMFILE it reads its
 * listeners' accept queues (from descriptors kept open for it since start-up)
 * and logs one line a minute with the count; /metrics and /status carry the
 * figures. Linux only (/proc); elsewhere this stays quiet.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";

export interface DescriptorStats {
  /** The soft RLIMIT_NOFILE (Bun raises it to the hard limit at start); null where unknown. */
  readonly limit: number | null;
  /** Descriptors open now (read when asked); the limit while none is left. */
  readonly open: number | null;
  /** Seconds (samples) in which no descriptor was left, so no connection could be accepted. */
  readonly acceptFailingSeconds: number;
  /** Connections waiting in the listeners' accept queues at the last sample that found none left. */
  readonly waiting: number;
}

export interface AcceptWatch {
  readonly stats: DescriptorStats;
  /** Also read this listener's queue (the HTTP port, known once it listens). */
  watch(port: number): void;
  stop(): void;
}

const SAMPLE_MS = 1000;
const LOG_EVERY_MS = 60_000;

function _softLimit(): number | null {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const n = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

function _keep(path: string): number | null {
  try {
    return openSync(path, "r");
  } catch {
    return null;
  }
}

const _chunk = Buffer.alloc(64 * 1024);

/** Accept queue lengths of the listening sockets on `ports`, from a /proc/net/tcp file kept open (listeners come first). */
function _queued(fd: number | null, ports: ReadonlySet<number>): number {
  if (fd === null) return 0;
  let n: number;
  try {
    n = readSync(fd, _chunk, 0, _chunk.length, 0);
  } catch {
    return 0;
  }
  let total = 0;
  for (const line of _chunk.toString("latin1", 0, n).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    if (f[3] !== "0A") break; // past the listening sockets
    const port = Number.parseInt(f[1]!.slice(f[1]!.lastIndexOf(":") + 1), 16);
    if (ports.has(port)) total += Number.parseInt(f[4]!.split(":")[1] ?? "0", 16);
  }
  return total;
}

function _exhausted(): boolean {
  try {
    closeSync(openSync("/dev/null", "r"));
    return false;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "EMFILE" || code === "ENFILE";
  }
}

export function watchAccepts(ports: readonly (number | null)[], log: Logger): AcceptWatch {
  const watched = new Set<number>(ports.filter((p): p is number => p !== null && p > 0));
  const limit = _softLimit();
  const tcp = limit === null ? null : _keep("/proc/self/net/tcp");
  const tcp6 = limit === null ? null : _keep("/proc/self/net/tcp6");
  let failing = 0;
  let waiting = 0;
  // Seconds without a descriptor that the minute's first line did not cover are written when the minute ends,
  // even once descriptors are back (then no sample would carry them), with the last queue length seen.
  const line = createTallyLine(LOG_EVERY_MS, (unlogged) =>
    log.error(
      "accept_failed",
      `No file descriptor left (limit ${limit}): new connections are not accepted` +
        ` (${waiting} waiting on ports ${[...watched].join(", ")}; ${unlogged} s like this since the last such line).` +
        ` Idle HTTP connections are the usual cause: put the HTTP port behind a proxy with a connection limit` +
        ` (logged once a minute; counted in sova_relay_accept_failing_seconds_total)`,
      { limit, waiting, seconds: unlogged, count: unlogged },
    ),
  );
  let dry = false;

  function sample(): void {
    dry = _exhausted();
    if (!dry) return;
    failing++;
    waiting = _queued(tcp, watched) + _queued(tcp6, watched);
    line.add(1);
  }

  const timer = limit === null ? null : setInterval(sample, SAMPLE_MS);
  timer?.unref?.();

  return {
    stats: {
      limit,
      get open() {
        if (limit === null) return null;
        try {
          return readdirSync("/proc/self/fd").length;
        } catch {
          return dry ? limit : null;
        }
      },
      get acceptFailingSeconds() {
        return failing;
      },
      get waiting() {
        return waiting;
      },
    },
    watch(port) {
      if (port > 0) watched.add(port);
    },
    stop() {
      if (timer) clearInterval(timer);
      line.stop();
      for (const fd of [tcp, tcp6])
        if (fd !== null)
          try {
            closeSync(fd);
          } catch {}
    },
  };
}
