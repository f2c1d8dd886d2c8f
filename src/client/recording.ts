/**
 * A session's recording as `sova-relay history export` writes it and `sova-relay
 * replay` reads it: JSON Lines, a header, then one line per relayed frame:
 *
 *   {"sova_relay_recording":1,"session":"open","frames":2,"exported_at":"…","source":"state-dir"}
 *   {"at":1764693600123,"source":"alice","frame":"AAAAK4GuU3RhdGVCcm9hZGNhc3SD…"}
 *
 * `frame` is the StateBroadcast frame exactly as the relay sent it, length prefix
 * included, in base64; `at` is when it reached the relay (ms since the epoch),
 * never earlier than the line before's and at most MAX_GAP_MS after it;
 * `source` repeats the sender's name for people reading the file.
 */
import { RelayError } from "../lib/errors.ts";
import { byteArrayValues, decodeMessage } from "../protocol/messages.ts";

export const RECORDING_VERSION = 1;

/**
 * The longest wait between two updates a recording may ask for. A replay waits that long (divided by
 * --speed) for the next one, so a time mistyped or made up (1e15 ms: 31,000 years) would hang it; a week
 * also keeps every wait within what a timer can hold (2^31 ms, about 24.8 days).
 */
export const MAX_GAP_MS = 7 * 24 * 3600 * 1000;
/** The latest time a Date holds (year 275760): a larger `at` is no time at all. */
const MAX_AT = 8.64e15;

export interface RecordingHeader {
  sova_relay_recording: number;
  session: string;
  frames: number;
  exported_at: string;
  /** "state-dir" or "cluster". */
  source: string;
}

export interface RecordedFrame {
  at: number;
  source: string;
  frame: Uint8Array;
  /** The update_data inside the frame: what a Sova instance sent. */
  data: Uint8Array;
}

export interface Recording {
  header: RecordingHeader;
  frames: RecordedFrame[];
}

export function headerLine(header: Omit<RecordingHeader, "sova_relay_recording">): string {
  return `${JSON.stringify({ sova_relay_recording: RECORDING_VERSION, ...header })}\n`;
}

/** One frame's line; `source` is read from the frame itself. */
export function frameLine(at: number, frame: Uint8Array): string {
  return `${JSON.stringify({ at, source: frameParts(frame).source, frame: Buffer.from(frame).toString("base64") })}\n`;
}

/**
 * The frames' lines, times never going back: a relay whose clock was stepped back (NTP) stored an earlier
 * time after a later one, which a replay reads as no wait; written so here, since `parseRecording` refuses
 * times that go back.
 */
export function frameLines(rows: ReadonlyArray<{ at: number; frame: Uint8Array }>): string {
  let last = 0;
  let text = "";
  for (const r of rows) {
    last = Math.max(last, r.at);
    text += frameLine(last, r.frame);
  }
  return text;
}

/** A StateBroadcast frame's sender and update_data; throws if it is not one. */
export function frameParts(frame: Uint8Array): { source: string; data: Uint8Array } {
  const length = frame.length >= 4 ? new DataView(frame.buffer, frame.byteOffset).getUint32(0) : -1;
  if (length !== frame.length - 4) throw new Error("the frame's length prefix does not match its size");
  const msg = decodeMessage(frame.subarray(4));
  if (msg.type !== "StateBroadcast") throw new Error(`a ${msg.type} frame, not a StateBroadcast`);
  return { source: msg.source_instance_name, data: byteArrayValues(msg.update_data) };
}

function bad(file: string, line: number, why: string): never {
  throw new RelayError(
    "E_CONFIG",
    `${file}, line ${line}: ${why} (not a recording made by sova-relay history export?)`,
  );
}

/** A line's `at`, checked against the line before's (`previous`); `refuse` says what is wrong with it. */
function arrival(at: unknown, previous: number | undefined, refuse: (why: string) => never): number {
  if (typeof at !== "number" || !Number.isFinite(at) || at < 0 || at > MAX_AT)
    // String(): JSON.stringify shows Infinity (1e400 in the file) as null.
    refuse(
      `'at' is ${typeof at === "number" ? String(at) : JSON.stringify(at)}, not an arrival time` +
        " (a non-negative number of ms since 1970)",
    );
  if (previous === undefined) return at;
  if (at < previous) refuse(`'at' ${at} is ${previous - at} ms before the line above's (times must not go back)`);
  if (at - previous > MAX_GAP_MS)
    refuse(
      `'at' ${at} is ${((at - previous) / 86_400_000).toFixed(1)} days after the line above's` +
        ` (at most ${MAX_GAP_MS / 86_400_000} days between two updates)`,
    );
  return at;
}

/** A recording's text, checked line by line; a bad line stops with its number. */
export function parseRecording(text: string, file: string): Recording {
  const lines = text.split("\n").filter((l, i, all) => l.trim() !== "" || i < all.length - 1);
  let header: RecordingHeader;
  try {
    header = JSON.parse(lines[0] ?? "") as RecordingHeader;
  } catch {
    return bad(file, 1, "not a JSON header");
  }
  if (header?.sova_relay_recording !== RECORDING_VERSION || typeof header.session !== "string")
    bad(file, 1, `not a version ${RECORDING_VERSION} recording header`);
  const frames: RecordedFrame[] = [];
  for (let i = 1; i < lines.length; i++) {
    let row: { at?: unknown; frame?: unknown } | null;
    try {
      row = JSON.parse(lines[i]!) as typeof row;
    } catch {
      return bad(file, i + 1, "not JSON");
    }
    if (row?.at === undefined || typeof row.frame !== "string")
      return bad(file, i + 1, "expected an arrival time and a frame");
    const at = arrival(row.at, frames.at(-1)?.at, (why) => bad(file, i + 1, why));
    const frame = new Uint8Array(Buffer.from(row.frame, "base64"));
    try {
      frames.push({ at, frame, ...frameParts(frame) });
    } catch (error) {
      bad(file, i + 1, (error as Error).message);
    }
  }
  return { header, frames };
}
