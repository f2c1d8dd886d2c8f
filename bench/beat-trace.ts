/**
 * Where a beat's time goes, from the kernel's side (`--trace-beats`, capacity loads of one session).
 *
 * The capacity scenario's p99 is taken where the generator reads: on a machine of 2 cores one generator
 * process sends the beat's k edits, then reads k x (k - 1) frames, on the cores the relay writes on. How
 * much of that p99 is the relay's? `perf record` of the socket syscalls and the scheduler's switches, for
 * a few seconds of the measured run, answers per beat (times from the generator's first edit sent):
 *
 * - `sendsMs`: until the generator's last edit left (one thread: it reads nothing meanwhile);
 * - `handoffMs`: until the relay's last write of the beat's frames returned: the relay's part is done,
 *   every recipient's bytes are in the kernel;
 * - `relayWriteMs`: of that, time inside those writes;
 * - `preemptedMs`: time the relay was ready to run and another task had its core;
 * - `read99Ms`: until the generator had read 99% of the beat's bytes.
 *
 * Root only (perf's tracepoints); otherwise null, with the reason. Data writes and edits are told from
 * nudges and pings by size: a `Pong` is 30 bytes, an edit of this bench 290.
 */
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface BeatTrace {
  sendsMs: number;
  handoffMs: number;
  relayWriteMs: number;
  preemptedMs: number;
  read99Ms: number;
}

export interface TraceSummary {
  beats: BeatTrace[];
  /** Per field: median and largest over the beats. */
  median: BeatTrace;
  max: BeatTrace;
}

/** A write the relay makes for the beat's frames, and an edit the generator sends: more than a nudge or a ping. */
const DATA_BYTES = 100;
const EDIT_BYTES = 200;
/** Edits this far apart belong to different beats (a beat is 500 ms; its edits leave within a few ms). */
const BEAT_GAP_MS = 100;
/** What is counted after a beat's first edit. */
const BEAT_SPAN_MS = 200;

interface _Call {
  start: number;
  end: number;
  pid: number;
  tid: number;
  name: "sendto" | "recvfrom";
  len: number;
  ret: number;
}

interface _Switch {
  at: number;
  prevTid: number;
  prevState: string;
  nextTid: number;
}

const LINE = /^\s*(.+?)\s+(\d+)\/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$/;
const SWITCH = /prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=.*? next_pid=(\d+)/;

/** The syscalls and switches in `perf script -F comm,pid,tid,time,event,trace` output. */
function _parse(lines: Iterable<string>): { calls: _Call[]; switches: _Switch[] } {
  const calls: _Call[] = [];
  const switches: _Switch[] = [];
  const open = new Map<number, { start: number; name: _Call["name"]; len: number }>();
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, , pidText, tidText, time, event, rest] = m as unknown as string[];
    const at = Number(time) * 1000;
    const tid = Number(tidText);
    if (event === "sched:sched_switch") {
      const s = SWITCH.exec(rest!);
      if (s) switches.push({ at, prevTid: Number(s[1]), prevState: s[2]!, nextTid: Number(s[3]) });
      continue;
    }
    const call = /^syscalls:sys_(enter|exit)_(sendto|recvfrom)$/.exec(event!);
    if (!call) continue;
    if (call[1] === "enter") {
      open.set(tid, {
        start: at,
        name: call[2] as _Call["name"],
        len: Number.parseInt(/len: (0x[0-9a-f]+)/.exec(rest!)?.[1] ?? "0", 16),
      });
      continue;
    }
    const began = open.get(tid);
    open.delete(tid);
    if (!began || began.name !== call[2]) continue;
    let ret = Number.parseInt(rest!.trim(), 16);
    if (ret >= 2 ** 63) ret -= 2 ** 64;
    calls.push({ ...began, end: at, pid: Number(pidText), tid, ret });
  }
  return { calls, switches };
}

/** Time `tid` spent runnable but switched out (state R) within [from, to]. */
function _preempted(switches: readonly _Switch[], tid: number, from: number, to: number): number {
  let out = -1;
  let total = 0;
  for (const s of switches) {
    if (s.at > to) break;
    if (s.prevTid === tid && s.prevState.startsWith("R")) out = s.at;
    else if (s.nextTid === tid && out >= 0) {
      total += Math.max(0, Math.min(s.at, to) - Math.max(out, from));
      out = -1;
    }
  }
  return total;
}

/** The time by which `share` of the bytes the calls took had been read. */
function _byShare(reads: readonly _Call[], share: number): number {
  const sorted = [...reads].sort((a, b) => a.end - b.end);
  const total = sorted.reduce((sum, c) => sum + Math.max(0, c.ret), 0);
  let got = 0;
  for (const c of sorted) {
    got += Math.max(0, c.ret);
    if (got >= share * total) return c.end;
  }
  return sorted.at(-1)?.end ?? 0;
}

function _beat(
  calls: readonly _Call[],
  switches: readonly _Switch[],
  edits: readonly _Call[],
  relayPid: number,
  generator: ReadonlySet<number>,
): BeatTrace | null {
  const t0 = edits[0]!.start;
  const within = (c: _Call) => c.start >= t0 && c.start <= t0 + BEAT_SPAN_MS;
  const writes = calls.filter((c) => c.pid === relayPid && c.name === "sendto" && c.len > DATA_BYTES && within(c));
  const reads = calls.filter((c) => generator.has(c.pid) && c.name === "recvfrom" && c.ret > DATA_BYTES && within(c));
  if (writes.length === 0 || reads.length === 0) return null;
  const handoff = Math.max(...writes.map((c) => c.end));
  return {
    sendsMs: Math.max(...edits.map((c) => c.end)) - t0,
    handoffMs: handoff - t0,
    relayWriteMs: writes.reduce((sum, c) => sum + c.end - c.start, 0),
    preemptedMs: _preempted(switches, writes[0]!.tid, t0, handoff),
    read99Ms: _byShare(reads, 0.99) - t0,
  };
}

const FIELDS = ["sendsMs", "handoffMs", "relayWriteMs", "preemptedMs", "read99Ms"] as const;

/** Per-beat figures from `perf script` lines; `relayPid`: the relay's process, `generatorPids`: the generator's. */
export function summarizeBeats(
  lines: Iterable<string>,
  relayPid: number,
  generatorPids: readonly number[],
): TraceSummary | null {
  const { calls, switches } = _parse(lines);
  calls.sort((a, b) => a.start - b.start);
  switches.sort((a, b) => a.at - b.at);
  const generator = new Set(generatorPids);
  const edits = calls.filter((c) => generator.has(c.pid) && c.name === "sendto" && c.len > EDIT_BYTES);
  const groups: _Call[][] = [];
  for (const e of edits) {
    const last = groups.at(-1);
    if (last && e.start - last.at(-1)!.start <= BEAT_GAP_MS) last.push(e);
    else groups.push([e]);
  }
  // The first and last beat may be cut by the recording's edges.
  const beats = groups
    .slice(1, -1)
    .map((g) => _beat(calls, switches, g, relayPid, generator))
    .filter((b): b is BeatTrace => b !== null);
  if (beats.length === 0) return null;
  const pick = (q: (values: number[]) => number) =>
    Object.fromEntries(FIELDS.map((f) => [f, q(beats.map((b) => b[f]).sort((a, b) => a - b))])) as unknown as BeatTrace;
  return { beats, median: pick((v) => v[Math.floor(v.length / 2)]!), max: pick((v) => v.at(-1)!) };
}

const EVENTS = [
  "syscalls:sys_enter_sendto",
  "syscalls:sys_exit_sendto",
  "syscalls:sys_enter_recvfrom",
  "syscalls:sys_exit_recvfrom",
  "sched:sched_switch",
];

/** Records `seconds` of the whole machine with perf and summarizes; null (and why) where it cannot. */
export async function traceBeats(
  relayPid: number,
  generatorPids: readonly number[],
  seconds: number,
): Promise<{ summary: TraceSummary | null; reason?: string }> {
  if (!Bun.which("perf")) return { summary: null, reason: "no perf on PATH" };
  if (process.getuid?.() !== 0) return { summary: null, reason: "perf's tracepoints need root" };
  const file = join(tmpdir(), `sova-beats-${process.pid}.data`);
  try {
    const record = Bun.spawn(
      ["perf", "record", "-q", "-a", "-e", EVENTS.join(","), "-o", file, "--", "sleep", String(seconds)],
      {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      },
    );
    if ((await record.exited) !== 0)
      return {
        summary: null,
        reason: `perf record: ${(await new Response(record.stderr).text()).trim().split("\n")[0]}`,
      };
    const script = Bun.spawn(["perf", "script", "-i", file, "-F", "comm,pid,tid,time,event,trace"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "ignore",
    });
    const text = await new Response(script.stdout).text();
    await script.exited;
    const summary = summarizeBeats(text.split("\n"), relayPid, generatorPids);
    return summary ? { summary } : { summary: null, reason: "no whole beat in the recording" };
  } finally {
    rmSync(file, { force: true });
  }
}

/** One line for the bench's table: medians and largest, then the beat read last (the p99's own). */
export function describeTrace(t: TraceSummary): string {
  const f = (b: BeatTrace, k: keyof BeatTrace) => b[k].toFixed(1);
  const both = (k: keyof BeatTrace) => `${f(t.median, k)}/${f(t.max, k)}`;
  const slowest = t.beats.reduce((a, b) => (b.read99Ms > a.read99Ms ? b : a));
  return (
    `${t.beats.length} beats, ms from the first edit sent (median/max): generator's sends done ${both("sendsMs")},` +
    ` relay's last write returned ${both("handoffMs")} (${both("relayWriteMs")} of it in those writes,` +
    ` ${both("preemptedMs")} preempted), generator had read 99% ${both("read99Ms")};` +
    ` the beat read last: sends ${f(slowest, "sendsMs")}, relay's last write ${f(slowest, "handoffMs")}` +
    ` (${f(slowest, "relayWriteMs")} writing, ${f(slowest, "preemptedMs")} preempted), read 99% ${f(slowest, "read99Ms")}`
  );
}
