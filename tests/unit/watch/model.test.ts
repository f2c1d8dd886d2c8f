/**
 * The scene model against Sova's own rules, one row per shared fixture case (and a
 * few constructed edits for rules no case reaches). Every row starts from the "band"
 * scene of the fixtures (set_scene_band) unless it says otherwise:
 *   L0 drums: kick 1b, hats 0.25b x4, (muted) 0.5b, 2b, empty script; loop 1-2, length 3.5
 *   L1 bass:  three frames (1, 1, 1.5 boinx), speed 0.5, the second named ""
 *   L2 lead:  riff A, riff B (0.75b, dummy), speed 2, loop end at frame 1
 *   L3:       no frames, length 16
 * Each row cites the Sova behaviour (1b7deac) it checks.
 */
import { describe, expect, test } from "bun:test";
import { decodeEdit, type Edit } from "../../../src/watch/edits.ts";
import { applyEdit, emptyScene, MODEL_LIMITS, type SceneModel } from "../../../src/watch/model.ts";
import { WatchedSession } from "../../../src/watch/session.ts";
import { loadSovaEdits, sovaEdit } from "../../support/sova-edits.ts";

function edit(name: string): Edit {
  const d = decodeEdit(sovaEdit(name).bytes);
  if (!d.ok) throw new Error(d.reason);
  return d.edit;
}

function band(): SceneModel {
  const scene = emptyScene();
  applyEdit(scene, edit("set_scene_band"), "setup", 1);
  return scene;
}

const scripts = (s: SceneModel, l: number) => s.lines[l]!.frames.map((f) => f.script);
const names = (s: SceneModel, l: number) => s.lines[l]!.frames.map((f) => f.name);
const durations = (s: SceneModel, l: number) => s.lines[l]!.frames.map((f) => f.duration);
const enabled = (s: SceneModel, l: number) => s.lines[l]!.frames.map((f) => f.enabled);
const loop = (s: SceneModel, l: number) => [s.lines[l]!.start ?? null, s.lines[l]!.end ?? null];

/** A scene as text, without who changed what and when: rows that must change nothing compare it with the band's. */
const same = (s: SceneModel) =>
  JSON.stringify(
    s.lines.map(({ rev: _r, chars: _c, by: _b, ...l }) => ({ ...l, frames: l.frames.map(({ by: _, ...f }) => f) })),
  );
const untouched = same(band());

interface Row {
  /** The fixture case applied (or a constructed edit). */
  edit: string | Edit;
  /** Edits applied first. */
  before?: Edit[];
  /** Where Sova says so (file:function at 1b7deac), and what it means here. */
  sova: string;
  expect: (s: SceneModel) => void;
}

const disableAll = (line: number, n: number): Edit => ({
  type: "DisableFrames",
  line,
  frames: Array.from({ length: n }, (_, i) => i),
  timing: { kind: "Immediate" },
});
const now = { kind: "Immediate" } as const;

const ROWS: Record<string, Row> = {
  enable_frames: {
    edit: "enable_frames",
    before: [disableAll(0, 4)],
    sova: "Line::enable_frames: each index, wrapped, set enabled",
    expect: (s) => expect(enabled(s, 0)).toEqual([false, true, false, true]),
  },
  enable_frames_array16: {
    edit: "enable_frames_array16",
    before: [disableAll(2, 2)],
    sova: "Line::enable_frame wraps: indices 0-19 on a 2-frame line reach both frames",
    expect: (s) => expect(enabled(s, 2)).toEqual([true, true]),
  },
  enable_frames_empty: {
    edit: "enable_frames_empty",
    sova: "an empty list changes nothing",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  disable_frames: {
    edit: "disable_frames",
    sova: "Line::disable_frame wraps: 5 on a 3-frame line is frame 2",
    expect: (s) => expect(enabled(s, 1)).toEqual([false, true, false]),
  },
  disable_frames_int_widths: {
    edit: "disable_frames_int_widths",
    sova: "Line::disable_frames does nothing on a line with no frames (line 3)",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  disable_frames_array32: {
    edit: "disable_frames_array32",
    sova: "Line::disable_frames: 65536 wrapped indices, every frame of line 0 muted",
    expect: (s) => expect(enabled(s, 0)).toEqual([false, false, false, false]),
  },
  set_script: {
    edit: "set_script",
    sova: "server.rs SetScript: the frame's script gets the content and keeps its language",
    expect: (s) => {
      expect(scripts(s, 0)[2]).toBe("n c");
      expect(s.lines[0]!.frames[2]!.lang).toBe("bali");
    },
  },
  set_script_end_of_line_0: {
    edit: "set_script_end_of_line_0",
    sova: "a deferred edit is applied at once: the relay cannot know when Sova applies it",
    expect: (s) => expect(scripts(s, 1)[0]).toBe("(n e4 :dur 0.5)"),
  },
  set_script_end_of_line_3: {
    edit: "set_script_end_of_line_3",
    sova: "server.rs SetScript: Scene::get_frame is None on a line with no frames, so nothing changes",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  set_script_at_beat_16: {
    edit: "set_script_at_beat_16",
    sova: "AtBeat(16): applied at once",
    expect: (s) => expect(scripts(s, 0)[0]).toBe("(n c4)"),
  },
  set_script_at_beat_300: {
    edit: "set_script_at_beat_300",
    sova: "AtBeat",
    expect: (s) => expect(scripts(s, 0)[1]).toBe("(n d4)"),
  },
  set_script_at_beat_u32_max: {
    edit: "set_script_at_beat_u32_max",
    sova: "AtBeat",
    expect: (s) => expect(scripts(s, 0)[1]).toBe("(n d4)"),
  },
  set_script_at_beat_above_u32: {
    edit: "set_script_at_beat_above_u32",
    sova: "AtBeat",
    expect: (s) => expect(scripts(s, 0)[1]).toBe("(n d4)"),
  },
  set_script_at_beat_above_2_53: {
    edit: "set_script_at_beat_above_2_53",
    sova: "AtBeat",
    expect: (s) => expect(scripts(s, 0)[1]).toBe("(n d4)"),
  },
  set_script_at_beat_u64_max: {
    edit: "set_script_at_beat_u64_max",
    sova: "AtBeat(u64::MAX) is never reached in Sova, but it is what the player asked for",
    expect: (s) => expect(scripts(s, 0)[1]).toBe("(n d4)"),
  },
  set_script_end_of_line_usize_max: {
    edit: "set_script_end_of_line_usize_max",
    sova: "EndOfLine of a line that does not exist: applied at once",
    expect: (s) => expect(scripts(s, 0)[0]).toBe("(n c4)"),
  },
  set_script_usize_max_indices: {
    edit: "set_script_usize_max_indices",
    sova: "Scene::line wraps: usize::MAX % 4 lines = line 3, which has no frames: nothing changes",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  set_script_empty: {
    edit: "set_script_empty",
    sova: "server.rs SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toBe(""),
  },
  set_script_multiline: {
    edit: "set_script_multiline",
    sova: "Line::frame_mut wraps: SetScript to frame 2 of a 2-frame line edits frame 0",
    expect: (s) => {
      expect(scripts(s, 2)[0]).toBe(
        '// frame 2: hats\nloop 4 {\n\t(dirt "hh" :gain 0.8 :speed 2)\n\twait 1/4\n}\n\r\n',
      );
      expect(scripts(s, 2)[1]).toBe("N 64 V 80");
    },
  },
  set_script_unicode: {
    edit: "set_script_unicode",
    sova: "server.rs SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toBe(sovaValue("set_script_unicode")),
  },
  set_script_html: {
    edit: "set_script_html",
    sova: "server.rs SetScript",
    expect: (s) => expect(scripts(s, 0)[1]).toBe(sovaValue("set_script_html")),
  },
  set_script_control_chars: {
    edit: "set_script_control_chars",
    sova: "server.rs SetScript: kept as sent, controls included",
    expect: (s) => expect(scripts(s, 0)[2]).toBe(sovaValue("set_script_control_chars")),
  },
  set_script_leading_bom: {
    edit: "set_script_leading_bom",
    sova: "server.rs SetScript: the leading U+FEFF is part of the script",
    expect: (s) => expect(scripts(s, 0)[0]!.charCodeAt(0)).toBe(0xfeff),
  },
  set_script_fixstr_31: {
    edit: "set_script_fixstr_31",
    sova: "SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toHaveLength(31),
  },
  set_script_str8_32: {
    edit: "set_script_str8_32",
    sova: "SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toHaveLength(32),
  },
  set_script_str16_256: {
    edit: "set_script_str16_256",
    sova: "SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toHaveLength(256),
  },
  set_script_str32_65536: {
    edit: "set_script_str32_65536",
    sova: "SetScript",
    expect: (s) => expect(scripts(s, 0)[0]).toHaveLength(65536),
  },
  set_scene_empty: {
    edit: "set_scene_empty",
    sova: "Scheduler::change_scene: SetScene replaces everything",
    expect: (s) => expect(s.lines).toEqual([]),
  },
  set_scene_line_new_defaults: {
    edit: "set_scene_line_new_defaults",
    sova: "SetScene with Line::new([1.0]): one 1-beat frame, the default script (empty, bali)",
    expect: (s) => {
      expect(s.lines).toHaveLength(1);
      expect(s.lines[0]!.frames).toEqual([
        { duration: 1, repetitions: 1, enabled: true, name: null, lang: "bali", script: "", by: "alice" },
      ]);
    },
  },
  set_scene_band: {
    edit: "set_scene_band",
    before: [edit("set_scene_empty")],
    sova: "SetScene replaces everything; loop bounds kept where valid (make_consistent)",
    expect: (s) => {
      expect(same(s)).toBe(untouched);
      expect(loop(s, 0)).toEqual([1, 2]);
      expect(loop(s, 2)).toEqual([null, 1]);
    },
  },
  set_scene_project_load_end_of_line: {
    edit: "set_scene_project_load_end_of_line",
    before: [edit("set_scene_empty")],
    sova: "a project loaded at the end of a loop: applied at once",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  set_scene_variable_values: {
    edit: "set_scene_variable_values",
    sova: "vars are opaque to a viewer; the line's frames are what it shows",
    expect: (s) => expect(scripts(s, 0)).toEqual(["(n c4)"]),
  },
  set_scene_deep_vars: {
    edit: "set_scene_deep_vars",
    sova: "vars nested 32 deep read like any other",
    expect: (s) => expect(scripts(s, 0)).toEqual(["(n c4)"]),
  },
  set_scene_map16: { edit: "set_scene_map16", sova: "SetScene", expect: (s) => expect(s.lines).toHaveLength(1) },
  set_scene_prototype_keys: {
    edit: "set_scene_prototype_keys",
    sova: "args and vars with JavaScript-internal keys are data, nothing more",
    expect: (s) => expect(scripts(s, 0)).toEqual(["(n c4)"]),
  },
  set_scene_float_edges: {
    edit: "set_scene_float_edges",
    sova: "SetScene keeps a speed of 0 or -1.5 and a length of 0 as sent (only SetLineSpeedFactor replaces <= 0)",
    expect: (s) => {
      expect(durations(s, 0)).toEqual([0, -0, 0.1, 1e-300, 5e-324, 1.7976931348623157e308]);
      expect([s.lines[0]!.speed, s.lines[0]!.length, s.lines[1]!.speed]).toEqual([0, 0, -1.5]);
    },
  },
  set_scene_unicode: {
    edit: "set_scene_unicode",
    sova: "SetScene: names and scripts as sent",
    expect: (s) => expect(names(s, 1)).toEqual(["مرحبا \u202eolleh", "</script>"]),
  },
  set_scene_large: {
    edit: "set_scene_large",
    sova: "SetScene: 64 x 64 frames, within the model's limits",
    expect: (s) => {
      expect(s.lines).toHaveLength(64);
      expect(s.lines.every((l) => l.frames.length === 64)).toBe(true);
    },
  },
  update_line_frames: {
    edit: "update_line_frames",
    sova: "Line::set_frames: the first frames get the new durations, the rest stay",
    expect: (s) => {
      expect(durations(s, 0)).toEqual([1, 0.5, 2, 2]);
      expect(scripts(s, 0)[0]).toBe('(dirt "bd")');
    },
  },
  update_line_frames_array16: {
    edit: "update_line_frames_array16",
    sova: "Line::set_frames appends Frame::from(duration) past the end: 24 frames, new ones default",
    expect: (s) => {
      expect(s.lines[1]!.frames).toHaveLength(24);
      expect(s.lines[1]!.frames[23]).toMatchObject({
        duration: 1,
        repetitions: 1,
        enabled: true,
        script: "",
        lang: "bali",
      });
      expect(scripts(s, 1)[2]).toBe("play(36, 43) -> midi");
    },
  },
  update_line_frames_empty: {
    edit: "update_line_frames_empty",
    sova: "Line::set_frames never shrinks a line",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  update_line_frames_non_finite: {
    edit: "update_line_frames_non_finite",
    sova: "durations are f64 as sent, NaN and infinities included; a fifth frame is appended",
    expect: (s) => expect(durations(s, 0)).toEqual([Number.NaN, Infinity, -Infinity, -0, 1]),
  },
  insert_frame: {
    edit: "insert_frame",
    sova: "Line::insert_frame at 2: a new default 1-beat frame, the others move right",
    expect: (s) => {
      expect(durations(s, 0)).toEqual([1, 0.25, 1, 0.5, 2]);
      expect(scripts(s, 0)[2]).toBe("");
      expect(loop(s, 0)).toEqual([1, 2]);
    },
  },
  insert_frame_at_beat: {
    edit: "insert_frame_at_beat",
    sova: "Line::insert_frame at 0 of an empty line (position == len appends)",
    expect: (s) => expect(durations(s, 3)).toEqual([0.25]),
  },
  remove_frame: {
    edit: "remove_frame",
    sova: "Line::remove_frame refuses a position past the end (3 of 3 frames): exact, not wrapped",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  remove_frame_usize_max: {
    edit: "remove_frame_usize_max",
    sova: "Scene::line_mut wraps the line (usize::MAX % 4 = line 3); the position is exact and past the end",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  set_line_start_frame_some: {
    edit: "set_line_start_frame_some",
    sova: "start_frame = 2; make_consistent keeps it (2 <= end 2)",
    expect: (s) => expect(loop(s, 0)).toEqual([2, 2]),
  },
  set_line_start_frame_none: {
    edit: "set_line_start_frame_none",
    sova: "start_frame = None: from the first frame",
    expect: (s) => expect(loop(s, 0)).toEqual([null, 2]),
  },
  set_line_end_frame_some: {
    edit: "set_line_end_frame_some",
    sova: "make_consistent clamps an end past the last frame to the last frame (7 -> 2)",
    expect: (s) => expect(loop(s, 1)).toEqual([null, 2]),
  },
  set_line_end_frame_none: {
    edit: "set_line_end_frame_none",
    before: [edit("set_line_end_frame_some")],
    sova: "end_frame = None: to the last frame",
    expect: (s) => expect(loop(s, 1)).toEqual([null, null]),
  },
  set_line_length_some: {
    edit: "set_line_length_some",
    sova: "custom_length = 8",
    expect: (s) => expect(s.lines[2]!.length).toBe(8),
  },
  set_line_length_none: {
    edit: "set_line_length_none",
    before: [edit("set_line_length_some")],
    sova: "custom_length = None: the frames' sum again",
    expect: (s) => expect(s.lines[2]!.length).toBeNull(),
  },
  set_line_speed_factor: {
    edit: "set_line_speed_factor",
    before: [{ type: "SetLineSpeedFactor", line: 1, speed: 3, timing: now }],
    sova: "speed_factor = 0.5",
    expect: (s) => expect(s.lines[1]!.speed).toBe(0.5),
  },
  set_line_speed_factor_end_of_line: {
    edit: "set_line_speed_factor_end_of_line",
    sova: "speed_factor = 1.5, applied at once",
    expect: (s) => expect(s.lines[0]!.speed).toBe(1.5),
  },
  duplicate_frame_range: {
    edit: "duplicate_frame_range",
    sova: "server.rs checks 1 <= 3 < 4 frames; the scheduler inserts the copies at 4, 5, 6",
    expect: (s) => expect(names(s, 0)).toEqual(["kick", "hats", null, null, "hats", null, null]),
  },
  duplicate_frame_range_at_beat: {
    edit: "duplicate_frame_range_at_beat",
    sova: "frame 0 copied in place; the loop end (1) stays",
    expect: (s) => {
      expect(names(s, 2)).toEqual(["riff A", "riff A", "riff B"]);
      expect(loop(s, 2)).toEqual([null, 1]);
    },
  },
  remove_frames_multi_line: {
    edit: "remove_frames_multi_line",
    sova: "highest index first; exact indices; loop bounds clamped after (line 0 ends at 1, line 2 at 0)",
    expect: (s) => {
      expect(names(s, 0)).toEqual(["kick", null]);
      expect(durations(s, 0)).toEqual([1, 2]);
      expect(loop(s, 0)).toEqual([1, 1]);
      expect(names(s, 2)).toEqual(["riff B"]);
      expect(loop(s, 2)).toEqual([null, 0]);
    },
  },
  remove_frames_multi_line_empty: {
    edit: "remove_frames_multi_line_empty",
    sova: "nothing listed, nothing removed",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  paste_data_block: {
    edit: "paste_data_block",
    sova: "server.rs PasteDataBlock: exact targets; column 0 -> line 1 frame 2 (frame 3 does not exist, skipped); column 1 -> line 2 frames 2-3 (skipped)",
    expect: (s) => {
      expect(s.lines[1]!.frames[2]).toMatchObject({ name: "copied A", script: "(n c4)", duration: 1 });
      expect(s.lines[1]!.frames).toHaveLength(3);
      expect(names(s, 2)).toEqual(["riff A", "riff B"]);
    },
  },
  paste_data_block_empty: {
    edit: "paste_data_block_empty",
    sova: "nothing to paste",
    expect: (s) => expect(same(s)).toBe(untouched),
  },
  set_frame_name_some: {
    edit: "set_frame_name_some",
    sova: "Line::set_frame_name",
    expect: (s) => expect(names(s, 0)[1]).toBe("intro"),
  },
  set_frame_name_none: {
    edit: "set_frame_name_none",
    sova: "name = None",
    expect: (s) => expect(names(s, 0)[1]).toBeNull(),
  },
  set_frame_name_empty: {
    edit: "set_frame_name_empty",
    sova: "an empty name is not the same as no name",
    expect: (s) => expect(names(s, 0)[1]).toBe(""),
  },
  set_frame_name_leading_bom: {
    edit: "set_frame_name_leading_bom",
    sova: "set_frame_name",
    expect: (s) => expect(names(s, 0)[1]).toBe("\ufeffintro (second take)"),
  },
  set_frame_name_unicode: {
    edit: "set_frame_name_unicode",
    sova: "set_frame_name",
    expect: (s) => expect(names(s, 0)[1]).toBe("🎹 drop — 東京 <b>x</b>"),
  },
  set_script_language: {
    edit: "set_script_language",
    sova: "Script::set_lang",
    expect: (s) => expect(s.lines[0]!.frames[1]!.lang).toBe("dummy"),
  },
  set_script_language_boinx: {
    edit: "set_script_language_boinx",
    sova: "Script::set_lang",
    expect: (s) => expect(s.lines[2]!.frames[0]!.lang).toBe("boinx"),
  },
  set_frame_repetitions: {
    edit: "set_frame_repetitions",
    sova: "repetitions = 4",
    expect: (s) => expect(s.lines[0]!.frames[1]!.repetitions).toBe(4),
  },
  set_frame_repetitions_zero: {
    edit: "set_frame_repetitions_zero",
    sova: "scheduler_actions.rs: repetitions.max(1)",
    expect: (s) => expect(s.lines[0]!.frames[0]!.repetitions).toBe(1),
  },
};

function sovaValue(name: string): string {
  return (sovaEdit(name).value as { SetScript: unknown[] }).SetScript[2] as string;
}

/** Variants that are not edits of the scene (chat, cursors) or never relayed: the scene must not move. */
const SCENE_UNCHANGED = new Set([
  "Chat",
  "UpdateGridSelection",
  "StartedEditingFrame",
  "StoppedEditingFrame",
  "SchedulerControl",
  "SetTempo",
  "GetSnapshot",
  "TransportStart",
]);

describe("every shared case applied to the model as Sova would", () => {
  const all = loadSovaEdits();
  test("every case has a row, or is one that leaves the scene alone", () => {
    for (const c of all) expect(c.name in ROWS || SCENE_UNCHANGED.has(c.variant)).toBe(true);
  });

  test.each(Object.entries(ROWS).map(([name, row]) => [name, row.sova, row] as const))("%s: %s", (_, __, row) => {
    const scene = band();
    for (const e of row.before ?? []) applyEdit(scene, e, "setup", 2);
    const e = typeof row.edit === "string" ? edit(row.edit) : row.edit;
    const applied = applyEdit(scene, e, "alice", 3);
    expect(applied.overLimit).toBe(false);
    row.expect(scene);
  });

  test.each(all.filter((c) => SCENE_UNCHANGED.has(c.variant)).map((c) => [c.name] as const))(
    "%s leaves the scene as it was",
    (name) => {
      const s = new WatchedSession("open");
      s.update("alice", 1, sovaEdit("set_scene_band").bytes);
      const before = same(s.scene);
      s.update("bob", 2, sovaEdit(name).bytes);
      expect(same(s.scene)).toBe(before);
    },
  );
});

describe("rules no shared case reaches", () => {
  const rows: Array<[string, Edit, (s: SceneModel) => void]> = [
    [
      "Line::insert_frame refuses a position past the end (4 of 3 frames)",
      { type: "InsertFrame", line: 1, position: 4, duration: 1, timing: now },
      (s) => expect(same(s)).toBe(untouched),
    ],
    [
      "remove_frames_multi_line never empties a line (2 of 2 frames asked)",
      { type: "RemoveFramesMultiLine", lines: [[2, [0, 1]]], timing: now },
      (s) => expect(names(s, 2)).toEqual(["riff A", "riff B"]),
    ],
    [
      "remove_frames_multi_line skips a line that does not exist (exact index 9)",
      { type: "RemoveFramesMultiLine", lines: [[9, [0]]], timing: now },
      (s) => expect(same(s)).toBe(untouched),
    ],
    [
      "SetLineSpeedFactor: a speed of 0 or less becomes 1",
      { type: "SetLineSpeedFactor", line: 2, speed: -3, timing: now },
      (s) => expect(s.lines[2]!.speed).toBe(1),
    ],
    [
      "SetLineSpeedFactor: NaN (not > 0) becomes 1",
      { type: "SetLineSpeedFactor", line: 2, speed: Number.NaN, timing: now },
      (s) => expect(s.lines[2]!.speed).toBe(1),
    ],
    [
      "make_consistent: a start past the end frame drops both bounds",
      { type: "SetLineStartFrame", line: 0, frame: 3, timing: now },
      (s) => expect(loop(s, 0)).toEqual([null, null]),
    ],
    [
      "Scene::line wraps line indices: line 5 of 4 is line 1",
      { type: "SetFrameName", line: 5, frame: 0, name: "wrapped", timing: now },
      (s) => expect(names(s, 1)[0]).toBe("wrapped"),
    ],
    [
      "DuplicateFrameRange checks the source line exactly (server.rs: scene.lines.get): line 4 of 4 is refused",
      { type: "DuplicateFrameRange", line: 4, start: 0, end: 0, insertAt: 0, timing: now },
      (s) => expect(same(s)).toBe(untouched),
    ],
    [
      "DuplicateFrameRange refuses start > end",
      { type: "DuplicateFrameRange", line: 0, start: 2, end: 1, insertAt: 0, timing: now },
      (s) => expect(same(s)).toBe(untouched),
    ],
  ];
  test.each(rows)("%s", (_, e, check) => {
    const scene = band();
    applyEdit(scene, e, "alice", 3);
    check(scene);
  });

  test("Scene::add_line_if_empty: UpdateLineFrames on a known empty scene adds a line (Line::default, speed 0)", () => {
    const scene = emptyScene();
    applyEdit(scene, edit("set_scene_empty"), "alice", 1);
    applyEdit(scene, { type: "UpdateLineFrames", line: 7, durations: [1, 2], timing: now }, "alice", 2);
    expect(scene.lines).toHaveLength(1);
    expect(durations(scene, 0)).toEqual([1, 2]);
    expect(scene.lines[0]!.speed).toBe(0);
  });

  test("on a known empty scene, SetScript changes nothing (server.rs: no frame there)", () => {
    const scene = emptyScene();
    applyEdit(scene, edit("set_scene_empty"), "alice", 1);
    applyEdit(scene, edit("set_script"), "alice", 2);
    expect(scene.lines).toEqual([]);
  });
});

describe("before the first SetScene: only what edits said", () => {
  test("cells appear at the indices named, every other field unknown; nothing wraps", () => {
    const scene = emptyScene();
    applyEdit(scene, edit("set_script"), "alice", 1); // line 0, frame 2
    applyEdit(scene, edit("set_line_speed_factor"), "alice", 2); // line 1: 0.5
    expect(scene.complete).toBe(false);
    expect(scene.lines[0]!.frames).toEqual([{}, {}, { script: "n c", by: "alice" }]);
    expect(scene.lines[1]).toMatchObject({ complete: false, speed: 0.5, frames: [] });
  });

  test("indices past the model's limits are left out rather than allocated", () => {
    const scene = emptyScene();
    applyEdit(scene, edit("set_script_usize_max_indices"), "alice", 1);
    expect(scene.lines).toEqual([]);
  });
});

describe("limits", () => {
  test("a scene past the limits is refused whole; the session falls back to the feed, then recovers on a SetScene that fits", () => {
    const s = new WatchedSession("open", { ...MODEL_LIMITS, lines: 16 });
    s.update("alice", 1, sovaEdit("set_scene_band").bytes);
    s.update("alice", 2, sovaEdit("set_scene_large").bytes); // 64 lines
    expect(s.capped).toBe(true);
    expect(s.view().lines).toEqual([]);
    expect(s.view().feed.at(-1)?.text).toBe("new scene: 64 lines, 4096 frames");
    s.update("alice", 3, sovaEdit("set_script").bytes);
    expect(s.capped).toBe(true);
    s.update("alice", 4, sovaEdit("set_scene_band").bytes);
    expect(s.capped).toBe(false);
    expect(s.view().lineCount).toBe(4);
  });

  test("text past the limit caps the model too", () => {
    const s = new WatchedSession("open", { ...MODEL_LIMITS, chars: 10_000 });
    s.update("alice", 1, sovaEdit("set_scene_band").bytes);
    s.update("alice", 2, sovaEdit("set_script_str32_65536").bytes);
    expect(s.capped).toBe(true);
  });
});
