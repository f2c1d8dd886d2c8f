/**
 * One line of the page's feed for each edit, chat message and unreadable update:
 * plain text (the page escapes it), bounded in length whatever was sent.
 */
import type { Edit, Index, Timing } from "./edits.ts";

export interface FeedEntry {
  /** The session's version when this entry was made: feeds resume after the last one a page saw. */
  seq: number;
  /** The relay's arrival time, ms since the epoch. */
  at: number;
  by: string;
  /** The edit's variant; "unreadable" for bytes no Sova could read, "skipped" when edits were not shown. */
  kind: string;
  text: string;
  /** When the edit is deferred: said in words. */
  when?: string;
  /** The frame it aimed at, after Sova's index rules (line alone for line settings). */
  line?: number;
  frame?: number;
}

export const MAX_CHAT_CHARS = 500;
const MAX_SNIPPET_CHARS = 80;

export function clip(text: string, max: number): string {
  // Code points are never more than UTF-16 units: most texts need no splitting.
  if (text.length <= max) return text;
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max).join("")}…`;
}

const n = (i: Index) => String(i);
const list = (xs: Index[]) =>
  xs.length > 8 ? `${xs.slice(0, 8).map(n).join(", ")}, … (${xs.length})` : xs.map(n).join(", ");
const beats = (x: number) => (Number.isFinite(x) ? `${x} beat${x === 1 ? "" : "s"}` : String(x));

export function timingText(t: Timing): string | undefined {
  if (t.kind === "EndOfLine") return `at the end of line ${t.line}'s loop`;
  if (t.kind === "AtBeat") return `at beat ${t.beat}`;
  return undefined;
}

function snippet(script: string): string {
  const first = script.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  return first === "" ? "(empty script)" : clip(first.trim(), MAX_SNIPPET_CHARS);
}

function frameText(e: Edit, cell?: { line: number; frame: number | null }): string | null {
  // Where the edit landed after Sova's wrapping (frame 2 of a 2-frame line is frame 0), else as sent.
  const at =
    cell?.frame != null
      ? `L${cell.line} F${cell.frame}`
      : "line" in e && "frame" in e
        ? `L${n(e.line)} F${e.frame === null ? "-" : n(e.frame)}`
        : "";
  switch (e.type) {
    case "SetScript":
      return `${at} script: ${snippet(e.content)}`;
    case "SetFrameName":
      return e.name === null ? `${at} name removed` : `${at} named “${clip(e.name, MAX_SNIPPET_CHARS)}”`;
    case "SetScriptLanguage":
      return `${at} language ${clip(e.lang, 40)}`;
    case "SetFrameRepetitions":
      return `${at} plays ×${n(e.repetitions)}`;
    case "EnableFrames":
    case "DisableFrames":
      return `L${n(e.line)} frames ${list(e.frames)} ${e.type === "EnableFrames" ? "unmuted" : "muted"}`;
    default:
      return null;
  }
}

function lineText(e: Edit): string | null {
  switch (e.type) {
    case "SetLineLength":
      return `L${n(e.line)} length ${e.length === null ? "from its frames" : beats(e.length)}`;
    case "SetLineSpeedFactor":
      return `L${n(e.line)} speed ×${e.speed}`;
    case "SetLineStartFrame":
      return `L${n(e.line)} loop starts at ${e.frame === null ? "the first frame" : `frame ${n(e.frame)}`}`;
    case "SetLineEndFrame":
      return `L${n(e.line)} loop ends at ${e.frame === null ? "the last frame" : `frame ${n(e.frame)}`}`;
    case "UpdateLineFrames":
      return `L${n(e.line)} frame durations ${e.durations.length > 8 ? `(${e.durations.length} frames)` : e.durations.join(", ")}`;
    case "InsertFrame":
      return `L${n(e.line)} frame inserted at ${n(e.position)} (${beats(e.duration)})`;
    case "RemoveFrame":
      return `L${n(e.line)} frame ${n(e.position)} removed`;
    default:
      return null;
  }
}

function sceneText(e: Edit): string {
  switch (e.type) {
    case "SetScene": {
      const frames = e.lines.reduce((k, l) => k + l.frames.length, 0);
      return `new scene: ${e.lines.length} line${e.lines.length === 1 ? "" : "s"}, ${frames} frames`;
    }
    case "DuplicateFrameRange":
      return `L${n(e.line)} frames ${n(e.start)}–${n(e.end)} copied to ${n(e.insertAt)}`;
    case "RemoveFramesMultiLine":
      return `${e.lines.reduce((k, [, xs]) => k + xs.length, 0)} frames removed from ${e.lines.length} lines`;
    case "PasteDataBlock":
      return `${e.data.reduce((k, c) => k + c.length, 0)} frames pasted at L${n(e.line)} F${n(e.frame)}`;
    case "Chat":
      return clip(e.text, MAX_CHAT_CHARS);
    case "Other":
      return `${e.variant} (not an edit of the scene)`;
    default:
      return e.type;
  }
}

/** The feed's words for an edit; `cell`: where it landed. */
export function describe(e: Edit, cell?: { line: number; frame: number | null }): string {
  return frameText(e, cell) ?? lineText(e) ?? sceneText(e);
}
