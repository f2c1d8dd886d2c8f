/**
 * The scene as the players intended it: every relayed edit applied the way the
 * sender's own Sova applies it (core/src/server.rs, which checks an edit before
 * handing it on, and core/src/schedule/scheduler_actions.rs with scene.rs and
 * scene/line.rs, at 1b7deac). Edits are relayed before anyone applies them, and
 * receivers apply only some variants, so no instance need hold exactly this
 * scene; it is what the players asked for.
 *
 * Until the first SetScene the relay does not know the scene: lines and frames are
 * then kept at the indices the edits name (nothing wraps, since the counts are
 * unknown), and every field no edit has set stays unknown (undefined). A SetScene
 * makes the whole scene known, and from then on Sova's rules apply exactly.
 * Deferred edits (EndOfLine, AtBeat) are applied at once: the relay cannot know
 * when they take effect.
 *
 * Memory is bounded by MODEL_LIMITS: an edit that would pass them drops the model
 * (the session shows its feed only) until a SetScene that fits.
 */
import type { Edit, FrameData, Index, LineData } from "./edits.ts";

export interface Cell {
  duration?: number;
  repetitions?: number;
  enabled?: boolean;
  name?: string | null;
  lang?: string;
  script?: string;
  /** The player who last changed this frame. */
  by?: string;
}

export interface LineModel {
  frames: Cell[];
  /** The frame count is known, so Sova's index rules apply; false before the first SetScene. */
  complete: boolean;
  speed?: number;
  start?: number | null;
  end?: number | null;
  length?: number | null;
  /** The player who last changed the line's own settings. */
  by?: string;
  /** The model version at which this line last changed (resumed streams get the lines changed since theirs). */
  rev: number;
  /** Characters of text held by the line's frames. */
  chars: number;
}

export interface SceneModel {
  lines: LineModel[];
  /** The line count is known (a SetScene was seen). */
  complete: boolean;
}

export const MODEL_LIMITS = { lines: 256, frames: 1024, chars: 1 << 20 } as const;

/** What an edit did: the lines it changed (by index), the frame it aimed at, or that it passed a limit. */
export interface Applied {
  lines: number[];
  cell: { line: number; frame: number | null } | null;
  overLimit: boolean;
}

export interface Limits {
  lines: number;
  frames: number;
  chars: number;
}

const toNumber = (i: Index): number => (typeof i === "bigint" ? Number(i) : i);
const plus = (i: Index, k: number): Index => (typeof i === "bigint" ? i + BigInt(k) : i + k);
const mod = (i: Index, n: number): number => (typeof i === "bigint" ? Number(i % BigInt(n)) : i % n);

/** Frame::from(duration): one repetition, enabled, the default script (empty, "bali"), no name (scene/frame.rs). */
function newCell(duration: number, by: string): Cell {
  return { duration, repetitions: 1, enabled: true, name: null, lang: "bali", script: "", by };
}

function cellOf(f: FrameData, by: string, consistent: boolean): Cell {
  // make_consistent raises repetitions of 0 to 1; a pasted frame (SetFrame) is stored as sent.
  const repetitions = Math.max(consistent ? 1 : 0, toNumber(f.repetitions));
  return { duration: f.duration, repetitions, enabled: f.enabled, name: f.name, lang: f.lang, script: f.script, by };
}

function emptyLine(complete: boolean, rev: number): LineModel {
  return { frames: [], complete, rev, chars: 0 };
}

function charsOf(line: LineModel): number {
  let n = 0;
  for (const c of line.frames) n += (c.script?.length ?? 0) + (c.name?.length ?? 0) + (c.lang?.length ?? 0) + 8;
  return n;
}

/** Line::make_consistent (scene/line.rs): loop bounds past the end are clamped, crossed ones dropped. */
function makeConsistent(line: LineModel): void {
  if (!line.complete) return;
  const n = line.frames.length;
  for (const c of line.frames) if (c.repetitions === 0) c.repetitions = 1;
  if (line.start != null && line.start >= n) line.start = null;
  if (line.end != null && line.end >= n) line.end = n > 0 ? n - 1 : null;
  if (line.start != null && line.end != null && line.start > line.end) line.start = line.end = null;
}

export interface ModelState {
  scene: SceneModel;
  limits: Limits;
  rev: number;
  by: string;
  touched: Set<number>;
  cell: Applied["cell"];
}

/**
 * The line an edit names. `wrap`: Scene::line_mut, index modulo the line count; else `scene.lines.get`, exact.
 * `addIfEmpty`: Scene::add_line_if_empty first (UpdateLineFrames, InsertFrame). Null when Sova does nothing.
 */
function lineAt(m: ModelState, index: Index, wrap: boolean, addIfEmpty = false): number | null {
  const lines = m.scene.lines;
  if (m.scene.complete) {
    // Line::default(): no frames, and a derived speed factor of 0.
    if (lines.length === 0 && addIfEmpty) {
      lines.push({ ...emptyLine(true, m.rev), speed: 0 });
      m.touched.add(0);
    }
    if (lines.length === 0) return null;
    if (wrap) return mod(index, lines.length);
    return index < lines.length ? toNumber(index) : null;
  }
  if (index >= m.limits.lines) return null;
  const i = toNumber(index);
  while (lines.length <= i) {
    m.touched.add(lines.length);
    lines.push(emptyLine(false, m.rev));
  }
  return i;
}

/** A frame of `line`: wrapped (Line::frame_mut) or exact; null when the line has no frames (Sova skips it). */
function frameAt(m: ModelState, line: LineModel, index: Index, wrap: boolean): number | null {
  if (line.complete) {
    if (line.frames.length === 0) return null;
    if (wrap) return mod(index, line.frames.length);
    return index < line.frames.length ? toNumber(index) : null;
  }
  if (index >= m.limits.frames) return null;
  const i = toNumber(index);
  while (line.frames.length <= i) line.frames.push({});
  return i;
}

function touch(m: ModelState, index: number, frame: number | null = null): LineModel {
  m.touched.add(index);
  m.cell = { line: index, frame };
  return m.scene.lines[index]!;
}

/** Edits of one frame's fields, all with wrapped indices (Scene::line_mut, Line::frame_mut). */
function setField(m: ModelState, l: Index, f: Index, set: (c: Cell) => void): void {
  const i = lineAt(m, l, true);
  if (i === null) return;
  const line = m.scene.lines[i]!;
  const j = frameAt(m, line, f, true);
  if (j === null) return;
  touch(m, i, j);
  set(line.frames[j]!);
  line.frames[j]!.by = m.by;
}

/** Edits of a line's own settings (wrapped line index). */
function setLine(m: ModelState, l: Index, set: (line: LineModel) => void): void {
  const i = lineAt(m, l, true);
  if (i === null) return;
  const line = touch(m, i);
  set(line);
  line.by = m.by;
  makeConsistent(line);
}

function insert(line: LineModel, position: number, cell: Cell): boolean {
  // Line::insert_frame refuses a position past the end (position == len appends).
  if (line.complete && position > line.frames.length) return false;
  while (line.frames.length < position) line.frames.push({});
  line.frames.splice(position, 0, cell);
  makeConsistent(line);
  return true;
}

function setScene(m: ModelState, lines: LineData[]): void {
  // Scheduler::change_scene: the whole scene replaced, then make_consistent on every line.
  m.scene.lines = lines.map((d) => {
    const line: LineModel = {
      frames: d.frames.map((f) => cellOf(f, m.by, true)),
      complete: true,
      speed: d.speedFactor,
      start: d.startFrame === null ? null : toNumber(d.startFrame),
      end: d.endFrame === null ? null : toNumber(d.endFrame),
      length: d.customLength,
      by: m.by,
      rev: m.rev,
      chars: 0,
    };
    makeConsistent(line);
    return line;
  });
  m.scene.complete = true;
  for (let i = 0; i < m.scene.lines.length; i++) m.touched.add(i);
}

function updateLineFrames(m: ModelState, l: Index, durations: number[]): void {
  // Line::set_frames: existing frames get the new durations, extra ones are appended; it never shrinks a line.
  const i = lineAt(m, l, true, true);
  if (i === null) return;
  const line = touch(m, i);
  durations.forEach((d, k) => {
    if (k < line.frames.length) line.frames[k] = { ...line.frames[k], duration: d, by: m.by };
    // A frame the relay had not seen yet already existed: only its duration is known now.
    else line.frames.push(line.complete ? newCell(d, m.by) : { duration: d, by: m.by });
  });
  makeConsistent(line);
}

function removeFrame(m: ModelState, l: Index, position: Index): void {
  // Line::remove_frame: an exact position, refused past the end.
  const i = lineAt(m, l, true);
  if (i === null) return;
  const line = m.scene.lines[i]!;
  if (position >= line.frames.length) return;
  touch(m, i);
  line.frames.splice(toNumber(position), 1);
  makeConsistent(line);
}

function duplicateRange(m: ModelState, l: Index, start: Index, end: Index, at: Index): void {
  // server.rs checks the source exactly (scene.lines.get, start <= end < len); the scheduler then inserts
  // each copy at at, at + 1, ... through insert_frame, which refuses positions past the end.
  const i = lineAt(m, l, false);
  if (i === null) return;
  const line = m.scene.lines[i]!;
  if (start > end || end >= line.frames.length || (!line.complete && at >= m.limits.frames)) return;
  const copies = line.frames.slice(toNumber(start), toNumber(end) + 1).map((c) => ({ ...c, by: m.by }));
  touch(m, i, toNumber(at));
  for (const [k, c] of copies.entries()) insert(line, toNumber(at) + k, c);
}

function removeMany(m: ModelState, lines: Array<[Index, Index[]]>): void {
  // remove_frames_multi_line: exact line indices; a line is skipped if the request would empty it; indices
  // are removed highest first, each only if it is still in range.
  for (const [l, indices] of lines) {
    const i = lineAt(m, l, false);
    if (i === null) continue;
    const line = m.scene.lines[i]!;
    const n = line.frames.length;
    if (line.complete && n > 0 && indices.length >= n) continue;
    const sorted = [...indices].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    for (const k of sorted) {
      if (k >= line.frames.length) continue;
      touch(m, i);
      line.frames.splice(toNumber(k), 1);
    }
    makeConsistent(line);
  }
}

function paste(m: ModelState, data: FrameData[][], l: Index, f: Index): void {
  // server.rs PasteDataBlock: column c goes to line l + c, row r to frame f + r, both exact; targets that do
  // not exist are skipped. Each pasted frame replaces the target whole (SetFrame).
  data.forEach((column, c) => {
    const i = lineAt(m, plus(l, c), false);
    if (i === null) return;
    const line = m.scene.lines[i]!;
    column.forEach((frame, r) => {
      const j = frameAt(m, line, plus(f, r), false);
      if (j === null) return;
      touch(m, i, j);
      line.frames[j] = cellOf(frame, m.by, false);
    });
  });
}

function frameEdit(m: ModelState, e: Edit): boolean {
  switch (e.type) {
    case "SetScript":
      // server.rs: only for a frame that exists (get_frame); the script keeps its language.
      setField(m, e.line, e.frame, (c) => (c.script = e.content));
      return true;
    case "EnableFrames":
    case "DisableFrames":
      for (const f of e.frames) setField(m, e.line, f, (c) => (c.enabled = e.type === "EnableFrames"));
      return true;
    case "SetFrameName":
      setField(m, e.line, e.frame, (c) => (c.name = e.name));
      return true;
    case "SetScriptLanguage":
      setField(m, e.line, e.frame, (c) => (c.lang = e.lang));
      return true;
    case "SetFrameRepetitions":
      // scheduler_actions.rs: repetitions.max(1).
      setField(m, e.line, e.frame, (c) => (c.repetitions = Math.max(1, toNumber(e.repetitions))));
      return true;
    default:
      return false;
  }
}

function lineEdit(m: ModelState, e: Edit): boolean {
  switch (e.type) {
    case "SetLineLength":
      setLine(m, e.line, (line) => (line.length = e.length));
      return true;
    case "SetLineSpeedFactor":
      // A speed of 0 or less (or NaN) becomes 1.
      setLine(m, e.line, (line) => (line.speed = e.speed > 0 ? e.speed : 1));
      return true;
    case "SetLineStartFrame":
      setLine(m, e.line, (line) => (line.start = e.frame === null ? null : toNumber(e.frame)));
      return true;
    case "SetLineEndFrame":
      setLine(m, e.line, (line) => (line.end = e.frame === null ? null : toNumber(e.frame)));
      return true;
    default:
      return false;
  }
}

function structureEdit(m: ModelState, e: Edit): void {
  switch (e.type) {
    case "SetScene":
      return setScene(m, e.lines);
    case "UpdateLineFrames":
      return updateLineFrames(m, e.line, e.durations);
    case "InsertFrame": {
      const i = lineAt(m, e.line, true, true);
      if (i !== null && e.position < m.limits.frames)
        if (insert(m.scene.lines[i]!, toNumber(e.position), newCell(e.duration, m.by)))
          touch(m, i, toNumber(e.position));
      return;
    }
    case "RemoveFrame":
      return removeFrame(m, e.line, e.position);
    case "DuplicateFrameRange":
      return duplicateRange(m, e.line, e.start, e.end, e.insertAt);
    case "RemoveFramesMultiLine":
      return removeMany(m, e.lines);
    case "PasteDataBlock":
      return paste(m, e.data, e.line, e.frame);
    default:
      return;
  }
}

/** Could this edit take the model past its limits before it is even applied? */
function tooBig(e: Edit, limits: Limits): boolean {
  if (e.type === "SetScene")
    return e.lines.length > limits.lines || e.lines.some((l) => l.frames.length > limits.frames);
  return e.type === "UpdateLineFrames" && e.durations.length > limits.frames;
}

function withinLimits(scene: SceneModel, limits: Limits, touched: Set<number>): boolean {
  if (scene.lines.length > limits.lines) return false;
  let chars = 0;
  for (const [i, line] of scene.lines.entries()) {
    if (touched.has(i)) line.chars = charsOf(line);
    if (line.frames.length > limits.frames) return false;
    chars += line.chars + 16;
  }
  return chars <= limits.chars;
}

/** Applies `edit` by `by` at version `rev`; `overLimit` means the caller must drop the model. */
export function applyEdit(
  scene: SceneModel,
  edit: Edit,
  by: string,
  rev: number,
  limits: Limits = MODEL_LIMITS,
): Applied {
  if (tooBig(edit, limits)) return { lines: [], cell: null, overLimit: true };
  const m: ModelState = { scene, limits, rev, by, touched: new Set(), cell: null };
  if (!frameEdit(m, edit) && !lineEdit(m, edit)) structureEdit(m, edit);
  for (const i of m.touched) if (scene.lines[i]) scene.lines[i]!.rev = rev;
  const overLimit = !withinLimits(scene, limits, m.touched);
  return { lines: [...m.touched].sort((a, b) => a - b), cell: m.cell, overLimit };
}

export function emptyScene(): SceneModel {
  return { lines: [], complete: false };
}
