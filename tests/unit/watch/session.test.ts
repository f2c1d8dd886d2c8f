/**
 * A watched session's views (snapshot, changes since an id) and the watcher's
 * queue between the relay and the sessions: bounded, drained off the caller's
 * turn, stale after a drop until the next SetScene.
 */
import { describe, expect, test } from "bun:test";
import { encodeBroadcastFrame, toByteArrayWire } from "../../../src/protocol/messages.ts";
import { broadcastPrefix } from "../../../src/protocol/messages.ts";
import { parseBroadcast } from "../../../src/watch/broadcast.ts";
import { FEED_PER_UPDATE, FEED_SIZE, WatchedSession } from "../../../src/watch/session.ts";
import { createWatcher } from "../../../src/watch/watcher.ts";
import { sovaEdit } from "../../support/sova-edits.ts";

const frame = (by: string, data: Uint8Array) => encodeBroadcastFrame(broadcastPrefix(by), 1n, toByteArrayWire(data));

describe("a StateBroadcast frame taken apart", () => {
  test("the sender and an exact copy of update_data, whatever its size", () => {
    for (const name of ["set_script", "set_scene_large", "chat_leading_bom"]) {
      const data = sovaEdit(name).bytes;
      const f = frame("alice ✨", data);
      const parts = parseBroadcast(f)!;
      expect(parts.source).toBe("alice ✨");
      expect(Buffer.compare(parts.data, data)).toBe(0);
      expect(parts.data.buffer).not.toBe(f.buffer);
    }
  });

  test("anything else is null, never thrown", () => {
    const f = frame("alice", sovaEdit("set_script").bytes);
    for (let n = 0; n < f.length; n++) expect(parseBroadcast(f.subarray(0, n))).toBeNull();
  });
});

describe("views", () => {
  test("a snapshot has everything; the changes since an id have only what changed after it", () => {
    const s = new WatchedSession("open");
    s.update("alice", 1000, sovaEdit("set_scene_band").bytes);
    const first = s.view();
    expect(first.from).toBeUndefined();
    expect(first.lines.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    s.update("bob", 2000, sovaEdit("set_script_language_boinx").bytes); // line 2
    s.update("bob", 3000, sovaEdit("chat").bytes);
    const next = s.view(first.id);
    expect(next.from).toBe(1);
    expect(next.lines.map((l) => l.index)).toEqual([2]);
    expect(next.feed.map((e) => [e.by, e.kind, e.text])).toEqual([
      ["bob", "SetScriptLanguage", "L2 F0 language boinx"],
      ["bob", "Chat", "hi"],
    ]);
    expect(next.last).toMatchObject({ line: 2, frame: 0, by: "bob" });
    expect(s.view(next.id).lines).toEqual([]);
  });

  test("the feed names the frame an edit landed on (Sova wraps indices), and says when Sova would change nothing", () => {
    const s = new WatchedSession("open");
    s.update("alice", 1, sovaEdit("set_scene_band").bytes);
    s.update("alice", 2, sovaEdit("set_script_multiline").bytes); // line 2, frame 2 of a 2-frame line
    s.update("alice", 3, sovaEdit("remove_frame").bytes); // frame 3 of a 3-frame line
    expect(s.feed.slice(1).map((e) => e.text)).toEqual([
      "L2 F0 script: // frame 2: hats",
      "L1 frame 3 removed (changes nothing)",
    ]);
  });

  test("an id from another epoch (a restarted relay) or from the future gets a snapshot", () => {
    const s = new WatchedSession("open");
    s.update("alice", 1, sovaEdit("set_scene_band").bytes);
    expect(s.view("other:1").from).toBeUndefined();
    expect(s.view(`${s.epoch}:99`).from).toBeUndefined();
    expect(s.view("nonsense").from).toBeUndefined();
  });

  test("an update no Sova could read is in the feed with its size; the scene does not move", () => {
    const s = new WatchedSession("open");
    s.update("alice", 1, sovaEdit("set_scene_band").bytes);
    s.update("mallory", 2, Uint8Array.of(0xc1, 1, 2, 3));
    expect(s.feed.at(-1)).toMatchObject({ kind: "unreadable", by: "mallory" });
    expect(s.feed.at(-1)!.text).toStartWith("unreadable edit (4 bytes)");
    expect(s.view().lineCount).toBe(4);
  });

  test("the feed keeps the last entries; an update carries the newest few; a page further behind is told of the gap", () => {
    const s = new WatchedSession("open");
    const start = s.view().id;
    for (let i = 0; i < FEED_SIZE + 10; i++) s.update("alice", i, sovaEdit("chat").bytes);
    expect(s.view().feed).toHaveLength(FEED_SIZE);
    const v = s.view(start);
    expect(v.feed).toHaveLength(FEED_PER_UPDATE);
    expect(v.feed.at(-1)!.seq).toBe(s.version);
    expect(v.gap).toBe(true);
    const recent = s.view(`${s.epoch}:${s.version - 3}`);
    expect([recent.feed.length, recent.gap]).toEqual([3, undefined]);
  });

  test("cursor and editing notices move the player, not the feed", () => {
    const s = new WatchedSession("open");
    s.update("alice", 1, sovaEdit("started_editing_frame").bytes);
    s.update("alice", 2, sovaEdit("update_grid_selection_range").bytes);
    const alice = s.view().players.find((p) => p.name === "alice")!;
    expect(alice.editing).toEqual({ line: 0, frame: 3 });
    expect(alice.cursor).toEqual({ line: 0, frame: 4 });
    expect(s.feed).toEqual([]);
  });

  test("members present and gone", () => {
    const s = new WatchedSession("open");
    s.members(["alice", "bob"]);
    s.members(["bob"]);
    expect(s.view().players.map((p) => [p.name, p.present])).toEqual([
      ["bob", true],
      ["alice", false],
    ]);
  });
});

describe("the watcher's queue", () => {
  test("the tap only queues; decoding happens when the drain runs", () => {
    const runs: Array<() => void> = [];
    const w = createWatcher({ schedule: (run) => runs.push(run) });
    w.watch(["open"]);
    expect(w.wants("open")).toBe(true);
    expect(w.wants("0123456789ab")).toBe(false);
    w.frame("open", frame("alice", sovaEdit("set_scene_band").bytes), 1);
    expect(w.stats.queued).toBe(1);
    expect(w.session("open")!.version).toBe(0);
    runs.shift()!();
    expect(w.stats).toMatchObject({ queued: 0, decoded: 1 });
    expect(w.session("open")!.view().lineCount).toBe(4);
  });

  test("past its bound a frame is dropped, counted, and the session is stale until the next SetScene", () => {
    const runs: Array<() => void> = [];
    const w = createWatcher({ maxQueue: 2, schedule: (run) => runs.push(run) });
    w.watch(["open"]);
    w.frame("open", frame("alice", sovaEdit("set_scene_band").bytes), 1);
    w.frame("open", frame("alice", sovaEdit("set_script").bytes), 2);
    w.frame("open", frame("alice", sovaEdit("set_script_empty").bytes), 3);
    expect(w.stats.dropped).toBe(1);
    w.drain();
    const s = w.session("open")!;
    expect(s.stale).toBe(true);
    expect(s.feed.some((e) => e.kind === "skipped")).toBe(true);
    w.frame("open", frame("alice", sovaEdit("set_scene_band").bytes), 4);
    w.drain();
    expect(s.stale).toBe(false);
  });

  test("a drain stops after its slice of time and goes on in the next turn", () => {
    const runs: Array<() => void> = [];
    const w = createWatcher({ sliceMs: 0, schedule: (run) => runs.push(run) });
    w.watch(["open"]);
    for (let i = 0; i < 40; i++) w.frame("open", frame("alice", sovaEdit("chat").bytes), i);
    runs.shift()!(); // the clock is read every 16 frames: a slice of 0 ms stops there
    expect(w.stats).toMatchObject({ queued: 24, decoded: 16 });
    while (runs.length > 0) runs.shift()!();
    expect(w.stats).toMatchObject({ queued: 0, decoded: 40 });
  });

  test("sessions no longer watched are dropped, with their models", () => {
    const w = createWatcher();
    w.watch(["open"]);
    expect(w.session("open")).toBeDefined();
    w.watch([]);
    expect(w.session("open")).toBeUndefined();
    expect(w.stats.sessions).toBe(0);
  });
});
