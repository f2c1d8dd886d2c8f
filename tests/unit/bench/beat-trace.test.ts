/**
 * `--trace-beats` (bench/beat-trace.ts) reads perf's lines into a beat's timeline: each figure
 * counted from the generator's first edit, nudges and pings left out, the recording's cut beats
 * dropped. Lines in the form `perf script -F comm,pid,tid,time,event,trace` prints them.
 */
import { describe, expect, test } from "bun:test";
import { summarizeBeats } from "../../../bench/beat-trace.ts";

const GEN = 100;
const RELAY = 200;

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;
const at = (ms: number) => (ms / 1000).toFixed(6);

function call(
  comm: string,
  pid: number,
  name: "sendto" | "recvfrom",
  fromMs: number,
  toMs: number,
  bytes: number,
): string[] {
  const size = name === "sendto" ? `len: ${hex(bytes)}` : `size: ${hex(65536)}`;
  return [
    `  ${comm} ${pid}/${pid} ${at(fromMs)}: syscalls:sys_enter_${name}: fd: 0x00000009, buff: 0x1, ${size}, flags: 0x00004040`,
    `  ${comm} ${pid}/${pid} ${at(toMs)}: syscalls:sys_exit_${name}: ${hex(bytes)}`,
  ];
}

function sw(ms: number, prev: number, state: string, next: number): string {
  return `  x ${prev}/${prev} ${at(ms)}: sched:sched_switch: prev_comm=a prev_pid=${prev} prev_prio=120 prev_state=${state} ==> next_comm=b next_pid=${next} next_prio=120`;
}

/** A beat at `t` ms: two edits, a nudge, two data writes with 2 ms preempted between, two reads. */
function beat(t: number): string[] {
  return [
    ...call("bun.exe", GEN, "sendto", t, t + 0.1, 290),
    ...call("bun.exe", GEN, "sendto", t + 1, t + 1.1, 290),
    ...call("sova-relay", RELAY, "sendto", t + 2, t + 2.05, 30),
    ...call("sova-relay", RELAY, "sendto", t + 3, t + 4, 8192),
    sw(t + 5, RELAY, "R", GEN),
    sw(t + 7, GEN, "S", RELAY),
    sw(t + 8, RELAY, "S", GEN),
    sw(t + 9, GEN, "S", RELAY),
    ...call("sova-relay", RELAY, "sendto", t + 10, t + 12, 8192),
    ...call("bun.exe", GEN, "recvfrom", t + 14, t + 15, 4096),
    ...call("bun.exe", GEN, "recvfrom", t + 19, t + 20, 4096),
    ...call("bun.exe", GEN, "recvfrom", t + 21, t + 21.5, 30),
  ];
}

describe("beat trace", () => {
  test("a beat's sends, hand-off, writes, preemption and reads, from its first edit", () => {
    const lines = [...beat(1000), ...beat(1500), ...beat(2000), ...beat(2500)];
    const summary = summarizeBeats(lines, RELAY, [GEN])!;
    // The first and the last beat may be cut by the recording: left out.
    expect(summary.beats).toHaveLength(2);
    const b = summary.beats[0]!;
    expect(b.sendsMs).toBeCloseTo(1.1, 3);
    expect(b.handoffMs).toBeCloseTo(12, 3);
    expect(b.relayWriteMs).toBeCloseTo(3, 3);
    // Switched out while runnable (R) for 2 ms; asleep (S) does not count.
    expect(b.preemptedMs).toBeCloseTo(2, 3);
    expect(b.read99Ms).toBeCloseTo(20, 3);
    expect(summary.median.handoffMs).toBeCloseTo(12, 3);
  });

  test("no whole beat: null", () => {
    expect(summarizeBeats([...beat(1000), ...beat(1500)], RELAY, [GEN])).toBeNull();
    expect(summarizeBeats(["garbage", ""], RELAY, [GEN])).toBeNull();
  });
});
