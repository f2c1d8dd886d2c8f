/**
 * A Sova `update_data` read as the edit it is: `rmp_serde::to_vec_named(&ClientMessage)`
 * at Sova 1b7deac (core/src/server/client.rs), read back with serde's rules.
 *
 * - An enum variant is its name (or its index in declaration order) alone when it is
 *   a unit variant, else a one-entry map {variant: payload}: a tuple variant's payload is
 *   an array of its fields, a newtype's the value itself, a struct variant's a map of
 *   named fields.
 * - A struct is a map of named fields (or an array in declaration order); unknown fields
 *   are skipped, fields with a serde default may be missing, the others may not.
 * - usize is a non-negative integer of any width (never a float); f64 is any number.
 *
 * `decodeEdit` never throws: whatever the bytes, it returns an edit or the reason
 * none could be read, as a Sova instance receiving them would fail.
 */
import { Float, readValue, type Value, type ValueMap } from "./value.ts";

/** A usize: a number, or a bigint past 2^53 (Sova sends usize::MAX, and wraps such indices by the count). */
export type Index = number | bigint;

export type Timing = { kind: "Immediate" } | { kind: "EndOfLine"; line: Index } | { kind: "AtBeat"; beat: Index };

export interface FrameData {
  duration: number;
  repetitions: Index;
  enabled: boolean;
  script: string;
  lang: string;
  name: string | null;
}

export interface LineData {
  frames: FrameData[];
  speedFactor: number;
  startFrame: Index | null;
  endFrame: Index | null;
  customLength: number | null;
}

type At<T> = T & { timing: Timing };

export type Edit =
  | At<{ type: "SetScript"; line: Index; frame: Index; content: string }>
  | At<{ type: "SetScene"; lines: LineData[] }>
  | At<{ type: "UpdateLineFrames"; line: Index; durations: number[] }>
  | At<{ type: "InsertFrame"; line: Index; position: Index; duration: number }>
  | At<{ type: "RemoveFrame"; line: Index; position: Index }>
  | At<{ type: "EnableFrames" | "DisableFrames"; line: Index; frames: Index[] }>
  | At<{ type: "SetFrameName"; line: Index; frame: Index; name: string | null }>
  | At<{ type: "SetScriptLanguage"; line: Index; frame: Index; lang: string }>
  | At<{ type: "SetFrameRepetitions"; line: Index; frame: Index; repetitions: Index }>
  | At<{ type: "SetLineLength"; line: Index; length: number | null }>
  | At<{ type: "SetLineSpeedFactor"; line: Index; speed: number }>
  | At<{ type: "SetLineStartFrame" | "SetLineEndFrame"; line: Index; frame: Index | null }>
  | At<{ type: "DuplicateFrameRange"; line: Index; start: Index; end: Index; insertAt: Index }>
  | At<{ type: "RemoveFramesMultiLine"; lines: Array<[Index, Index[]]> }>
  /** `data`: one array per line (column), each of frames (rows); `line`/`frame`: the top-left target. */
  | At<{ type: "PasteDataBlock"; data: FrameData[][]; line: Index; frame: Index }>
  /** (row, col) pairs: a row is a frame, a column a line. */
  | { type: "UpdateGridSelection"; start: [Index, Index]; end: [Index, Index] }
  | { type: "StartedEditingFrame" | "StoppedEditingFrame"; line: Index; frame: Index }
  | { type: "Chat"; text: string }
  /** A ClientMessage Sova never relays (tempo, transport, devices...): readable, not an edit of the scene. */
  | { type: "Other"; variant: string };

export type Decoded = { ok: true; edit: Edit } | { ok: false; reason: string };

/** ClientMessage's variants in declaration order: serde also names a variant by this index. */
const VARIANTS = [
  "SchedulerControl",
  "SetTempo",
  "SetName",
  "EnableFrames",
  "DisableFrames",
  "SetScript",
  "GetScript",
  "GetScene",
  "SetScene",
  "GetClock",
  "GetPeers",
  "Chat",
  "UpdateLineFrames",
  "InsertFrame",
  "RemoveFrame",
  "SetLineStartFrame",
  "SetLineEndFrame",
  "GetSnapshot",
  "UpdateGridSelection",
  "StartedEditingFrame",
  "StoppedEditingFrame",
  "SetLineLength",
  "SetLineSpeedFactor",
  "TransportStart",
  "TransportStop",
  "RequestDeviceList",
  "ConnectMidiDeviceById",
  "DisconnectMidiDeviceById",
  "ConnectMidiDeviceByName",
  "DisconnectMidiDeviceByName",
  "CreateVirtualMidiOutput",
  "AssignDeviceToSlot",
  "UnassignDeviceFromSlot",
  "CreateOscDevice",
  "RemoveOscDevice",
  "DuplicateFrameRange",
  "RemoveFramesMultiLine",
  "RequestDuplicationData",
  "PasteDataBlock",
  "SetFrameName",
  "SetScriptLanguage",
  "SetFrameRepetitions",
] as const;
const UNIT_VARIANTS = new Set(["GetScene", "GetClock", "GetPeers", "GetSnapshot", "RequestDeviceList"]);
const TIMINGS = ["Immediate", "EndOfLine", "AtBeat"] as const;

class EditError extends Error {}

function fail(why: string): never {
  throw new EditError(why);
}

function usize(v: Value, what: string): Index {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === "bigint" && v >= 0n && v <= 0xffff_ffff_ffff_ffffn) return v;
  return fail(`${what}: expected an unsigned integer`);
}

function f64(v: Value, what: string): number {
  if (v instanceof Float) return v.value;
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  return fail(`${what}: expected a number`);
}

function str(v: Value, what: string): string {
  return typeof v === "string" ? v : fail(`${what}: expected a string`);
}

function bool(v: Value, what: string): boolean {
  return typeof v === "boolean" ? v : fail(`${what}: expected a boolean`);
}

function list<T>(v: Value, what: string, item: (x: Value, what: string) => T): T[] {
  if (!Array.isArray(v)) return fail(`${what}: expected a sequence`);
  return v.map((x, i) => item(x, `${what}[${i}]`));
}

const optional =
  <T>(item: (x: Value, what: string) => T) =>
  (v: Value, what: string): T | null =>
    v === null ? null : item(v, what);

/** A tuple's fields: an array of exactly `n`. */
function tuple(v: Value, n: number, what: string): Value[] {
  if (!Array.isArray(v) || v.length !== n) return fail(`${what}: expected a tuple of ${n}`);
  return v;
}

/**
 * A struct's fields by name, from a map (unknown names skipped) or an array in declaration order. A name missing
 * from the result had no value; `required` names must have one.
 */
function struct(v: Value, names: readonly string[], required: readonly string[], what: string): Map<string, Value> {
  const out = new Map<string, Value>();
  if (Array.isArray(v)) {
    if (v.length < required.length || v.length > names.length) fail(`${what}: expected ${names.length} fields`);
    for (const [i, x] of v.entries()) out.set(names[i]!, x);
  } else if (v instanceof Map) {
    for (const [k, x] of v) if (typeof k === "string" && names.includes(k)) out.set(k, x);
  } else fail(`${what}: expected a struct`);
  for (const name of required) if (!out.has(name)) fail(`${what}: missing field \`${name}\``);
  return out;
}

/** The variant of an externally tagged enum value, and its payload (undefined for a unit variant). */
function variant(v: Value, names: readonly string[], what: string): [string, Value | undefined] {
  const name = (k: Value): string => {
    if (typeof k === "string") return names.includes(k) ? k : fail(`${what}: unknown variant \`${k}\``);
    if (typeof k === "number" && Number.isInteger(k) && k >= 0 && k < names.length) return names[k]!;
    return fail(`${what}: expected a variant name`);
  };
  if (typeof v === "string" || typeof v === "number") return [name(v), undefined];
  if (v instanceof Map && v.size === 1) {
    const [k, payload] = (v as ValueMap).entries().next().value!;
    return [name(k), payload];
  }
  return fail(`${what}: expected an enum variant`);
}

function timing(v: Value): Timing {
  const [kind, payload] = variant(v, TIMINGS, "timing");
  if (kind === "Immediate") return payload === undefined || payload === null ? { kind } : fail("timing: unit variant");
  if (payload === undefined) return fail(`timing: ${kind} needs a value`);
  return kind === "EndOfLine"
    ? { kind, line: usize(payload, "timing") }
    : { kind: "AtBeat", beat: usize(payload, "timing") };
}

const SCRIPT_FIELDS = ["content", "lang", "index", "line_index", "args"] as const;
const FRAME_FIELDS = ["duration", "repetitions", "enabled", "script", "name"] as const;
const LINE_FIELDS = ["frames", "speed_factor", "vars", "index", "start_frame", "end_frame", "custom_length"] as const;

function frameData(v: Value, what: string): FrameData {
  const f = struct(v, FRAME_FIELDS, ["duration", "script"], what);
  const s = struct(f.get("script")!, SCRIPT_FIELDS, SCRIPT_FIELDS, `${what}.script`);
  usize(s.get("index")!, `${what}.script.index`);
  usize(s.get("line_index")!, `${what}.script.line_index`);
  const args = s.get("args");
  if (!(args instanceof Map)) fail(`${what}.script.args: expected a map`);
  for (const [k, x] of args) if (typeof k !== "string" || typeof x !== "string") fail(`${what}.script.args: strings`);
  const name = f.get("name");
  return {
    duration: f64(f.get("duration")!, `${what}.duration`),
    repetitions: f.has("repetitions") ? usize(f.get("repetitions")!, `${what}.repetitions`) : 1,
    enabled: f.has("enabled") ? bool(f.get("enabled")!, `${what}.enabled`) : true,
    script: str(s.get("content")!, `${what}.script.content`),
    lang: str(s.get("lang")!, `${what}.script.lang`),
    name: name === undefined ? null : optional(str)(name, `${what}.name`),
  };
}

function lineData(v: Value, what: string): LineData {
  const l = struct(v, LINE_FIELDS, ["frames"], what);
  const opt = <T>(key: string, item: (x: Value, what: string) => T): T | null => {
    const x = l.get(key);
    return x === undefined ? null : optional(item)(x, `${what}.${key}`);
  };
  if (l.has("index")) usize(l.get("index")!, `${what}.index`);
  return {
    frames: list(l.get("frames")!, `${what}.frames`, frameData),
    speedFactor: l.has("speed_factor") ? f64(l.get("speed_factor")!, `${what}.speed_factor`) : 1,
    startFrame: opt("start_frame", usize),
    endFrame: opt("end_frame", usize),
    customLength: opt("custom_length", f64),
  };
}

/** The scene edits: tuple variants whose last field is the timing. */
function tupleEdit(type: string, p: Value): Edit | null {
  return frameEdit(type, p) ?? lineEdit(type, p);
}

/** Edits of frames within one line. */
function frameEdit(type: string, p: Value): Edit | null {
  switch (type) {
    case "SetScript": {
      const [l, f, c, t] = tuple(p, 4, type);
      return {
        type,
        line: usize(l!, "line"),
        frame: usize(f!, "frame"),
        content: str(c!, "script"),
        timing: timing(t!),
      };
    }
    case "InsertFrame": {
      const [l, pos, d, t] = tuple(p, 4, type);
      const line = usize(l!, "line");
      return { type, line, position: usize(pos!, "position"), duration: f64(d!, "duration"), timing: timing(t!) };
    }
    case "RemoveFrame": {
      const [l, pos, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), position: usize(pos!, "position"), timing: timing(t!) };
    }
    case "EnableFrames":
    case "DisableFrames": {
      const [l, fs, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), frames: list(fs!, "frames", usize), timing: timing(t!) };
    }
    case "SetFrameName": {
      const [l, f, n, t] = tuple(p, 4, type);
      const name = optional(str)(n!, "name");
      return { type, line: usize(l!, "line"), frame: usize(f!, "frame"), name, timing: timing(t!) };
    }
    case "SetScriptLanguage": {
      const [l, f, lang, t] = tuple(p, 4, type);
      return { type, line: usize(l!, "line"), frame: usize(f!, "frame"), lang: str(lang!, "lang"), timing: timing(t!) };
    }
    case "SetFrameRepetitions": {
      const [l, f, r, t] = tuple(p, 4, type);
      const repetitions = usize(r!, "repetitions");
      return { type, line: usize(l!, "line"), frame: usize(f!, "frame"), repetitions, timing: timing(t!) };
    }
    default:
      return null;
  }
}

/** Edits of whole lines, and the scene. */
function lineEdit(type: string, p: Value): Edit | null {
  switch (type) {
    case "SetScene": {
      const [scene, t] = tuple(p, 2, type);
      const lines = list(struct(scene!, ["lines"], ["lines"], "scene").get("lines")!, "lines", lineData);
      return { type, lines, timing: timing(t!) };
    }
    case "UpdateLineFrames": {
      const [l, d, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), durations: list(d!, "durations", f64), timing: timing(t!) };
    }
    case "SetLineLength": {
      const [l, len, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), length: optional(f64)(len!, "length"), timing: timing(t!) };
    }
    case "SetLineSpeedFactor": {
      const [l, s, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), speed: f64(s!, "speed"), timing: timing(t!) };
    }
    case "SetLineStartFrame":
    case "SetLineEndFrame": {
      const [l, f, t] = tuple(p, 3, type);
      return { type, line: usize(l!, "line"), frame: optional(usize)(f!, "frame"), timing: timing(t!) };
    }
    default:
      return null;
  }
}

/** The struct variants, the cursor messages and chat. */
function otherEdit(type: string, p: Value): Edit | null {
  switch (type) {
    case "DuplicateFrameRange": {
      const names = ["src_line_idx", "src_frame_start_idx", "src_frame_end_idx", "target_insert_idx", "timing"];
      const f = struct(p, names, names, type);
      const [line, start, end, insertAt] = names.slice(0, 4).map((n) => usize(f.get(n)!, n));
      return { type, line: line!, start: start!, end: end!, insertAt: insertAt!, timing: timing(f.get("timing")!) };
    }
    case "RemoveFramesMultiLine": {
      const f = struct(p, ["lines_and_indices", "timing"], ["lines_and_indices", "timing"], type);
      const lines = list(f.get("lines_and_indices")!, "lines_and_indices", (x, what): [Index, Index[]] => {
        const [l, fs] = tuple(x, 2, what);
        return [usize(l!, what), list(fs!, what, usize)];
      });
      return { type, lines, timing: timing(f.get("timing")!) };
    }
    case "PasteDataBlock": {
      const names = ["data", "target_row", "target_col", "timing"];
      const f = struct(p, names, names, type);
      const data = list(f.get("data")!, "data", (col, what) => list(col, what, frameData));
      const line = usize(f.get("target_col")!, "target_col");
      return { type, data, line, frame: usize(f.get("target_row")!, "target_row"), timing: timing(f.get("timing")!) };
    }
    case "UpdateGridSelection": {
      const f = struct(p, ["start", "end"], ["start", "end"], type);
      const cell = (x: Value, what: string): [Index, Index] => {
        const [r, c] = tuple(x, 2, what);
        return [usize(r!, what), usize(c!, what)];
      };
      return { type, start: cell(f.get("start")!, "start"), end: cell(f.get("end")!, "end") };
    }
    case "StartedEditingFrame":
    case "StoppedEditingFrame": {
      const [l, f] = tuple(p, 2, type);
      return { type, line: usize(l!, "line"), frame: usize(f!, "frame") };
    }
    case "Chat":
      return { type, text: str(p, "chat") };
    default:
      return null;
  }
}

/** What `update_data` says, or why it says nothing a Sova instance could read. Never throws. */
export function decodeEdit(bytes: Uint8Array): Decoded {
  try {
    const [type, payload] = variant(readValue(bytes), VARIANTS, "message");
    if (UNIT_VARIANTS.has(type))
      return payload === undefined ? { ok: true, edit: { type: "Other", variant: type } } : bad();
    if (payload === undefined) return bad();
    const edit = tupleEdit(type, payload) ?? otherEdit(type, payload) ?? { type: "Other" as const, variant: type };
    return { ok: true, edit };
  } catch (error) {
    // ValueError and EditError say what was wrong; anything else (a RangeError) is still a refusal, not a crash.
    return { ok: false, reason: error instanceof Error ? error.message : "unreadable" };
  }
  function bad(): Decoded {
    return { ok: false, reason: "message: variant and payload do not match" };
  }
}
