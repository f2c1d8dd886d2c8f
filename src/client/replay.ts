/**
 * Playing a recording back: a timeline of update_data at the spacing they reached
 * the relay (divided by a speed factor), delivered either to a relay, through one
 * registered instance per original player, named as a replay, or to any other
 * sink (the local spectator page of `sova-relay replay --watch`).
 */
import { RelayError } from "../lib/errors.ts";
import { MAX_NAME_CHARS } from "../core/names.ts";
import { connect, type RelayClient } from "./client.ts";
import { decodeMessage, encodeFrame, toByteArrayWire, type Uuid } from "../protocol/messages.ts";
import type { RecordedFrame } from "./recording.ts";

export const REPLAY_MARK = " (replay)";

/** The name a player's replay registers under: its own, marked, within the relay's 64 characters. */
export function replayName(original: string): string {
  const chars = [...original];
  const room = MAX_NAME_CHARS - [...REPLAY_MARK].length;
  return `${chars.length > room ? chars.slice(0, room).join("") : original}${REPLAY_MARK}`;
}

export interface Timeline {
  /** Each frame's due time in ms after the start, at the chosen speed. */
  readonly due: number[];
  readonly durationMs: number;
}

export function timeline(frames: readonly RecordedFrame[], speed: number): Timeline {
  const first = frames[0]?.at ?? 0;
  let last = 0;
  // parseRecording refuses times that go back; frames from elsewhere keep their order all the same.
  const due = frames.map((f) => (last = Math.max(last, (f.at - first) / speed)));
  return { due, durationMs: due.at(-1) ?? 0 };
}

/**
 * Resolves after `ms`, or as soon as `signal` aborts, its timer then cleared: a stop must not wait for the
 * next frame's time (Bun.sleep cannot be cut short, so Ctrl-C once sent one more frame, late).
 */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/**
 * Calls `deliver` for each frame at its due time and resolves with how many went out: all of them, or those
 * before `signal` aborted (none after it). Waits on the clock (not on counts of timers): a late turn of the
 * event loop is caught up without drift.
 */
export async function play(
  frames: readonly RecordedFrame[],
  speed: number,
  deliver: (frame: RecordedFrame, index: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  const { due } = timeline(frames, speed);
  const start = performance.now();
  for (let i = 0; i < frames.length; i++) {
    const wait = start + due[i]! - performance.now();
    if (wait > 1) await pause(wait, signal);
    if (signal?.aborted) return i;
    deliver(frames[i]!, i);
  }
  return frames.length;
}

export interface ReplayTarget {
  host: string;
  port: number;
  tls?: boolean | { ca?: string };
  token: string | null;
  version: string;
}

/**
 * Each frame's StateUpdate, encoded before the clock starts, so that at its due time only a write is left
 * (encoding a large scene, or the first encode of all, would otherwise shift it). The sender's original
 * timestamp is kept, as the rest of the update is.
 */
export function stateUpdates(frames: readonly RecordedFrame[], ids: ReadonlyMap<string, Uuid>): Uint8Array[] {
  return frames.map((f) => {
    const sent = decodeMessage(f.frame.subarray(4));
    const timestamp = sent.type === "StateBroadcast" ? sent.timestamp : 0n;
    const update = toByteArrayWire(f.data);
    return encodeFrame({ type: "StateUpdate", source_instance_id: ids.get(f.source)!, timestamp, update_data: update });
  });
}

/** One connection per original player, registered under its replay name; closed by `close`. */
export async function registerPlayers(
  frames: readonly RecordedFrame[],
  target: ReplayTarget,
): Promise<{ players: Map<string, RelayClient>; close(): void }> {
  const players = new Map<string, RelayClient>();
  const close = () => {
    for (const c of players.values()) c.close();
  };
  try {
    for (const source of new Set(frames.map((f) => f.source))) {
      // No inbox: the others' broadcasts are not kept, only counted by nobody.
      const client = await connect({ host: target.host, port: target.port, tls: target.tls, keepInbox: false });
      players.set(source, client);
      await client.register({ name: replayName(source), token: target.token, version: target.version });
    }
  } catch (error) {
    close();
    const why = (error as Error).message;
    throw new RelayError("E_CLIENT", `cannot register the replay's players at ${target.host}:${target.port}: ${why}`, {
      cause: error,
    });
  }
  return { players, close };
}
