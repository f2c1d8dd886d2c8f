/**
 * One watched session: its scene model, its feed, its players, and a version that
 * moves with every change. A page gets a snapshot of all of it once, then the
 * changes since the version it has: the lines changed since (each line records the
 * version of its last change), the feed entries after it, and the players.
 */
import { decodeEdit, type Edit, type Index } from "./edits.ts";
import { clip, describe, type FeedEntry, timingText } from "./feed.ts";
import {
  type Applied,
  applyEdit,
  emptyScene,
  type Limits,
  type LineModel,
  MODEL_LIMITS,
  type SceneModel,
} from "./model.ts";

export const FEED_SIZE = 200;
/**
 * Feed entries a page is sent per update at most, the newest: a feed moving faster than anyone can read
 * (hundreds of edits a second) is sent in part, marked as a gap, rather than costing every spectator all of it.
 */
export const FEED_PER_UPDATE = 40;
const MAX_PLAYERS = 64;
const MAX_NAME_CHARS = 64;

export interface Player {
  name: string;
  colour: string;
  /** A member of the session right now (false: seen in the feed, since gone). */
  present: boolean;
  /** The frame this player has open in the editor, when it said so (StartedEditingFrame). */
  editing: { line: number; frame: number } | null;
  /** The player's grid cursor (UpdateGridSelection's end). */
  cursor: { line: number; frame: number } | null;
  lastSeen: number;
}

/** A line as a page shows it: the model's, with its index and its loop's length in beats (null: unknown). */
export type LineView = Omit<LineModel, "chars"> & { index: number; beats: number | null };

/**
 * The loop's length: the custom length when set, else the frames in the loop bounds, each its duration times its
 * repetitions (what Sova plays). Unknown while a frame in the loop is.
 */
export function loopBeats(line: LineModel): number | null {
  if (line.length != null) return line.length;
  if (!line.complete) return null;
  const start = line.start ?? 0;
  const end = line.end ?? line.frames.length - 1;
  let beats = 0;
  for (let i = start; i <= end; i++) {
    const f = line.frames[i];
    if (f?.duration === undefined) return null;
    beats += f.duration * (f.repetitions ?? 1);
  }
  return beats;
}

/** What a page is sent: everything (a snapshot, `from` absent) or the changes after `from`. */
export interface View {
  /** `epoch:version`, the SSE event id: a page resumes from it. */
  id: string;
  from?: number;
  /** A SetScene was seen: the scene's shape is known. */
  known: boolean;
  /** Past the model's limits: the feed only, until a SetScene that fits. */
  capped: boolean;
  /** Edits were skipped under load: the grid may be out of date until the next SetScene. */
  stale: boolean;
  lineCount: number;
  lines: LineView[];
  feed: FeedEntry[];
  /** Feed entries between `from` and the first sent were dropped from the ring. */
  gap?: boolean;
  players: Player[];
  last: { line: number; frame: number | null; by: string; colour: string } | null;
}

/** A colour per player name, the same on every page and node: a hue from the name's FNV-1a hash. */
export function colourOf(name: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return `hsl(${(h >>> 0) % 360} 70% 45%)`;
}

const toNumber = (i: Index): number => (typeof i === "bigint" ? Number(i) : i);

export class WatchedSession {
  readonly epoch: string;
  version = 0;
  scene: SceneModel = emptyScene();
  capped = false;
  stale = false;
  private readonly kept: FeedEntry[] = [];
  readonly players = new Map<string, Player>();
  last: View["last"] = null;
  /** Updates read, and updates no Sova could read. */
  decoded = 0;
  unreadable = 0;

  constructor(
    readonly id: string,
    private readonly limits: Limits = MODEL_LIMITS,
  ) {
    this.epoch = Math.random().toString(36).slice(2, 10);
  }

  /** One relayed update: decoded, applied, and told in the feed. */
  update(by: string, at: number, data: Uint8Array): void {
    const name = clip(by, MAX_NAME_CHARS);
    const decoded = decodeEdit(data);
    this.version++;
    this.player(name, at);
    if (!decoded.ok) {
      this.unreadable++;
      const text = `unreadable edit (${data.length} bytes): ${clip(decoded.reason, 120)}`;
      return this.note({ seq: this.version, at, by: name, kind: "unreadable", text });
    }
    this.decoded++;
    const edit = decoded.edit;
    if (this.cursorEdit(name, edit)) return;
    const applied = this.apply(edit, name);
    let text = describe(edit, applied?.cell ?? undefined);
    // Sova refuses it too (no such line or frame, a position past the end): the player asked, nothing changed.
    if (applied && applied.lines.length === 0 && this.scene.complete && edit.type !== "SetScene")
      text += " (changes nothing)";
    const entry: FeedEntry = { seq: this.version, at, by: name, kind: edit.type, text };
    const when = "timing" in edit ? timingText(edit.timing) : undefined;
    if (when) entry.when = when;
    if (applied?.cell) {
      entry.line = applied.cell.line;
      if (applied.cell.frame !== null) entry.frame = applied.cell.frame;
      this.last = { ...applied.cell, by: name, colour: colourOf(name) };
    }
    this.note(entry);
  }

  /** The decoding queue dropped `count` of this session's updates. */
  skipped(count: number, at: number): void {
    this.version++;
    this.stale = true;
    const text = `${count} edit${count === 1 ? "" : "s"} not shown: the relay was busy (the grid may be out of date)`;
    this.note({ seq: this.version, at, by: "", kind: "skipped", text });
  }

  /** Cursor and editing notices move a player's marker, not the scene, and make no feed entry. */
  private cursorEdit(name: string, edit: Edit): boolean {
    const p = this.players.get(name)!;
    if (edit.type === "UpdateGridSelection") {
      // (row, col): a row is a frame, a column a line.
      p.cursor = { line: toNumber(edit.end[1]), frame: toNumber(edit.end[0]) };
    } else if (edit.type === "StartedEditingFrame") {
      p.editing = { line: toNumber(edit.line), frame: toNumber(edit.frame) };
    } else if (edit.type === "StoppedEditingFrame") {
      p.editing = null;
    } else return false;
    return true;
  }

  private apply(edit: Edit, by: string): Applied | null {
    if (edit.type === "Chat" || edit.type === "Other") return null;
    if (edit.type === "SetScene") {
      // A whole new scene: what was skipped or over the limits no longer matters.
      this.scene = emptyScene();
      this.capped = false;
      this.stale = false;
    } else if (this.capped) return null;
    const applied = applyEdit(this.scene, edit, by, this.version, this.limits);
    if (applied.overLimit) {
      this.capped = true;
      this.scene = emptyScene();
      this.last = null;
      return null;
    }
    return applied;
  }

  private note(entry: FeedEntry): void {
    this.kept.push(entry);
    // Trimmed now and then, not at every entry: a busy session adds hundreds a second.
    if (this.kept.length >= 2 * FEED_SIZE) this.kept.splice(0, this.kept.length - FEED_SIZE);
  }

  /** The last FEED_SIZE entries, oldest first. */
  get feed(): readonly FeedEntry[] {
    return this.kept.length > FEED_SIZE ? this.kept.slice(-FEED_SIZE) : this.kept;
  }

  private player(name: string, at: number): void {
    const p = this.players.get(name);
    if (p) {
      p.lastSeen = at;
      return;
    }
    this.players.set(name, { name, colour: colourOf(name), present: false, editing: null, cursor: null, lastSeen: at });
    if (this.players.size > MAX_PLAYERS) {
      const gone = [...this.players.values()].filter((x) => !x.present).sort((a, b) => a.lastSeen - b.lastSeen)[0];
      if (gone) this.players.delete(gone.name);
    }
  }

  /** The session's members now (names), from the relay: they are shown as present, the rest as gone. */
  members(names: readonly string[]): void {
    const now = new Set(names.map((n) => clip(n, MAX_NAME_CHARS)));
    let changed = false;
    for (const name of now) {
      if (!this.players.has(name)) this.player(name, 0);
      const p = this.players.get(name)!;
      if (!p.present) [p.present, changed] = [true, true];
    }
    for (const p of this.players.values()) {
      if (!p.present || now.has(p.name)) continue;
      [p.present, p.editing, p.cursor, changed] = [false, null, null, true];
    }
    if (changed) this.version++;
  }

  /** Everything, or the changes after `since` (an event id); a snapshot when `since` is not one of ours. */
  view(since?: string): View {
    const from = this.resumable(since);
    const lines: LineView[] = [];
    this.scene.lines.forEach((line, index) => {
      if (from !== undefined && line.rev <= from) return;
      const { chars: _, ...shown } = line;
      lines.push({ ...shown, index, beats: loopBeats(line) });
    });
    const after = from === undefined ? [...this.feed] : this.feed.filter((e) => e.seq > from);
    const feed = from === undefined ? after : after.slice(-FEED_PER_UPDATE);
    const view: View = {
      id: `${this.epoch}:${this.version}`,
      known: this.scene.complete,
      capped: this.capped,
      stale: this.stale,
      lineCount: this.scene.lines.length,
      lines,
      feed,
      players: [...this.players.values()].sort((a, b) => Number(b.present) - Number(a.present)),
      last: this.last,
    };
    if (from !== undefined) {
      view.from = from;
      const oldest = this.feed[0]?.seq;
      const lost = oldest !== undefined && oldest > from + 1 && this.feed.length === FEED_SIZE;
      if (lost || after.length > feed.length) view.gap = true;
    }
    return view;
  }

  /** The version in `since` when it is this session's (same epoch) and not ahead of it. */
  resumable(since: string | undefined): number | undefined {
    if (since === undefined) return undefined;
    const [epoch, v] = since.split(":");
    const version = Number(v);
    if (epoch !== this.epoch || !Number.isSafeInteger(version) || version < 0 || version > this.version)
      return undefined;
    return version;
  }
}
