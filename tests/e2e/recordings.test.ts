/**
 * Keeping a concert: a session's history exported as a recording (the CLI, as a
 * host runs it), played back into a fresh session of another relay by the CLI,
 * and received by a listening instance byte for byte at the original spacing;
 * played into a local spectator page with no relay at all; and the CLI's answers
 * to what it cannot use.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { updateValues } from "../../src/client/client.ts";
import { frameLine, headerLine, parseRecording } from "../../src/client/recording.ts";
import { encodeFrame, toByteArrayWire } from "../../src/protocol/messages.ts";
import { lineOrEnd, watchOutput } from "../support/lines.ts";
import { cleanupAfterEach, drained } from "../support/peers.ts";
import { ROOT } from "../support/paths.ts";
import { ClientPool, startInProcess } from "../support/relay.ts";
import { sovaEdit } from "../support/sova-edits.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const TOKEN = "replay-session-token-7f3a9c";
const keep = cleanupAfterEach();

function cli(args: string[]) {
  const p = Bun.spawnSync([...SOURCE, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

/** Edits sent by two players at uneven spacing (sent on timers: the relay's arrival times are what counts). */
const SCRIPT: Array<[string, string, number]> = [
  ["alice", "set_scene_band", 0],
  ["bob", "set_script_html", 120],
  ["alice", "chat_unicode", 330],
  ["bob", "set_script_leading_bom", 360],
  ["alice", "update_line_frames", 700],
];

async function record(dir: string): Promise<string> {
  const edits = SCRIPT.map(([, name]) => sovaEdit(name).bytes); // read before the clock starts
  const relay = await startInProcess(["--state-dir", dir, "--history", "100"]);
  const pool = new ClientPool(() => relay.port);
  const players = { alice: await pool.register("alice"), bob: await pool.register("bob") };
  const start = performance.now();
  for (const [i, [who, , at]] of SCRIPT.entries()) {
    await Bun.sleep(Math.max(0, start + at - performance.now()));
    players[who as "alice" | "bob"].sendUpdate(edits[i]!);
  }
  // Each edit reaches the other player: all relayed (and so in the history) before the relay stops.
  for (const [who, other] of [
    ["alice", players.bob],
    ["bob", players.alice],
  ] as const)
    for (let n = SCRIPT.filter(([w]) => w === who).length; n > 0; n--) await other.next("StateBroadcast");
  pool.closeAll();
  await relay.stop(); // commits what the history database has queued
  const file = join(dir, "concert.jsonl");
  const exported = cli(["history", "export", "--state-dir", dir, "--out", file]);
  expect(exported).toMatchObject({ code: 0, err: `wrote ${SCRIPT.length} updates of session open to ${file}\n` });
  return file;
}

/** A recording written by hand: `[ms after the first, player, edit]` a line, from a fixed start. */
function written(dir: string, rows: Array<[number, string, string]>, start = 1_796_245_200_000): string {
  const file = join(dir, "written.jsonl");
  const lines = rows.map(([at, source, edit]) => {
    const update_data = toByteArrayWire(sovaEdit(edit).bytes);
    const frame = encodeFrame({ type: "StateBroadcast", source_instance_name: source, timestamp: 0n, update_data });
    return frameLine(start + at, frame);
  });
  const header = headerLine({ session: "open", frames: rows.length, exported_at: "", source: "state-dir" });
  writeFileSync(file, header + lines.join(""));
  return file;
}

describe("history export and replay", () => {
  test("a recording holds a header, then every relayed frame exactly, with its arrival time", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const file = await record(dir);
    const rec = parseRecording(readFileSync(file, "utf8"), file);
    expect(rec.header).toMatchObject({
      sova_relay_recording: 1,
      session: "open",
      frames: SCRIPT.length,
      source: "state-dir",
    });
    expect(rec.frames.map((f) => f.source)).toEqual(SCRIPT.map(([who]) => who));
    for (const [i, f] of rec.frames.entries()) expect(Buffer.compare(f.data, sovaEdit(SCRIPT[i]![1]).bytes)).toBe(0);
    // Arrival times, as the relay saw them: in order, spaced about as sent.
    const gaps = rec.frames.slice(1).map((f, i) => f.at - rec.frames[i]!.at);
    expect(gaps.every((g) => g >= 0)).toBe(true);
    expect(rec.frames.at(-1)!.at - rec.frames[0]!.at).toBeGreaterThanOrEqual(650);
  }, 20_000);

  test("replayed into a fresh session: byte-identical update_data, players marked as replays, original spacing (±50 ms)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const file = await record(dir);
    const rec = parseRecording(readFileSync(file, "utf8"), file);
    const target = keep(await startInProcess(["--token", TOKEN]));
    const pool = new ClientPool(() => target.port);
    const listener = await pool.register("listener", { token: TOKEN });
    const arrivals: Array<{ at: number; source: string; data: Uint8Array }> = [];
    const all = Promise.withResolvers<void>();
    listener.onMessage((m) => {
      if (m.type !== "StateBroadcast") return;
      arrivals.push({ at: performance.now(), source: m.source_instance_name, data: updateValues(m) });
      if (arrivals.length === rec.frames.length) all.resolve();
    });
    const replay = Bun.spawn([...SOURCE, "replay", file, "--port", String(target.port), "--token", TOKEN], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await replay.exited).toBe(0);
    expect(await new Response(replay.stdout).text()).toMatch(
      new RegExp(`^replayed ${SCRIPT.length} of ${SCRIPT.length} updates in \\d+\\.\\d s\n$`),
    );
    await all.promise;
    pool.closeAll();
    expect(arrivals.map((a) => a.source)).toEqual(rec.frames.map((f) => `${f.source} (replay)`));
    for (const [i, a] of arrivals.entries()) expect(Buffer.compare(a.data, rec.frames[i]!.data)).toBe(0);
    // How far each gap between two updates is from the recording's (shown whole when one is off).
    const off = arrivals
      .slice(1)
      .map((a, i) => Math.round(Math.abs(a.at - arrivals[i]!.at - (rec.frames[i + 1]!.at - rec.frames[i]!.at))));
    expect(off).toEqual(off.map((d) => Math.min(d, 50)));
  }, 30_000);

  test("--speed 2 halves the spacing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const file = await record(dir);
    const rec = parseRecording(readFileSync(file, "utf8"), file);
    const target = keep(await startInProcess([]));
    const pool = new ClientPool(() => target.port);
    const listener = await pool.register("listener");
    const times: number[] = [];
    const all = Promise.withResolvers<void>();
    listener.onMessage((m) => {
      if (m.type === "StateBroadcast" && times.push(performance.now()) === rec.frames.length) all.resolve();
    });
    const replay = Bun.spawn([...SOURCE, "replay", file, "--port", String(target.port), "--speed", "2"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    expect(await replay.exited).toBe(0);
    await all.promise;
    pool.closeAll();
    const original = rec.frames.at(-1)!.at - rec.frames[0]!.at;
    // Half the time, within what a busy machine adds to two arrivals (±50 ms is asked of speed 1 only).
    expect(Math.abs(times.at(-1)! - times[0]! - original / 2)).toBeLessThanOrEqual(100);
  }, 30_000);
});

describe("replay --watch: a recording into a local spectator page, no relay, no Sova", () => {
  test("the page's view fills as the recording plays", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const file = await record(dir);
    const proc = Bun.spawn([...SOURCE, "replay", file, "--watch", "--speed", "4"], { stdout: "pipe", stderr: "pipe" });
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      while (!out.includes("\n")) out += new TextDecoder().decode((await reader.read()).value);
      const url = out.trim();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/watch\/[A-Za-z0-9_-]{32}$/);
      type View = {
        known: boolean;
        feed: unknown[];
        lines: Array<{ frames: Array<{ script: string }> }>;
        players: Array<{ name: string }>;
      };
      let view = (await (await fetch(`${url}/view`)).json()) as View;
      while (view.feed.length < SCRIPT.length) {
        await Bun.sleep(20);
        view = (await (await fetch(`${url}/view`)).json()) as View;
      }
      expect(view.known).toBe(true);
      const html = (sovaEdit("set_script_html").value as { SetScript: string[] }).SetScript[2];
      expect(view.lines[0]!.frames[1]!.script).toBe(html!);
      expect(view.players.map((p) => p.name).sort()).toEqual(["alice", "bob"]);
      const page = await fetch(url);
      expect(page.headers.get("content-security-policy")).toContain("script-src 'sha256-");
      expect((await fetch(url.replace(/\/watch\/.*/, "/watch/wrong"))).status).toBe(404);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  }, 30_000);
});

describe("what the CLI cannot use: one line, exit 2", () => {
  test("no such recording, a malformed line, no state directory, no session history", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const missing = cli(["replay", join(dir, "none.jsonl"), "--port", "9"]);
    expect(missing.code).toBe(2);
    expect(missing.err).toBe(`sova-relay: cannot read the recording '${join(dir, "none.jsonl")}' (ENOENT)\n`);
    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, '{"sova_relay_recording":1,"session":"open","frames":1}\n{"at":1,"frame":"AAAA"}\n');
    const malformed = cli(["replay", bad, "--port", "9"]);
    expect(malformed.code).toBe(2);
    expect(malformed.err).toStartWith(`sova-relay: ${bad}, line 2: `);
    expect(cli(["replay"]).err).toBe("sova-relay: replay needs a recording: sova-relay replay FILE\n");
    expect(cli(["history", "export"]).err).toBe(
      "sova-relay: history export needs --state-dir DIR (or --cluster URL)\n",
    );
    const empty = cli(["history", "export", "--state-dir", dir]);
    expect(empty).toMatchObject({
      code: 2,
      err: `sova-relay: no session history in ${dir} (no history.sqlite: the relay keeps one with --state-dir and --history)\n`,
    });
    expect(cli(["replay", bad, "--speed", "0"]).code).toBe(2);
  }, 30_000);

  test("an arrival time that is no time, goes back, or jumps past a week: the line named, exit 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    const start = 1_796_245_200_000;
    const week = 7 * 24 * 3600 * 1000;
    const cases: Array<[string, unknown[], string]> = [
      ["a huge time", [start, 1e15], "line 3: 'at' 1000000000000000 is 11553284.2 days after the line above's"],
      ["past a week", [start, start + 1, start + 1 + week + 1], "line 4: 'at' 1796850000002 is 7.0 days after"],
      ["going back", [start, start + 500, start + 200], "line 4: 'at' 1796245200200 is 300 ms before the line above's"],
      ["negative", [-1], "line 2: 'at' is -1, not an arrival time (a non-negative number of ms since 1970)"],
      ["a string", [start, "soon"], `line 3: 'at' is "soon", not an arrival time`],
      ["past any date", [1e300], "line 2: 'at' is 1e+300, not an arrival time"],
    ];
    for (const [what, times, says] of cases) {
      const file = written(
        dir,
        times.map(() => [0, "alice", "set_scene_band"]),
        0,
      );
      // The same lines with these times in place.
      const [header, ...lines] = readFileSync(file, "utf8").trimEnd().split("\n");
      const timed = lines.map((l, i) => JSON.stringify({ ...JSON.parse(l), at: times[i] }));
      writeFileSync(file, `${[header, ...timed].join("\n")}\n`);
      const r = cli(["replay", file, "--port", "9"]);
      expect({ what, code: r.code, lines: r.err.split("\n").length - 1 }).toEqual({ what, code: 2, lines: 1 });
      expect(r.err).toStartWith(`sova-relay: ${file}, ${says}`);
    }
    // A week to the millisecond is a wait a replay can make.
    const edge = written(
      dir,
      [
        [0, "alice", "set_scene_band"],
        [week, "bob", "set_script_html"],
      ],
      start,
    );
    expect(parseRecording(readFileSync(edge, "utf8"), edge).frames.map((f) => f.at)).toEqual([start, start + week]);
  }, 30_000);

  test("export writes times that never go back, though the relay's clock stepped back: replay reads it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-rec-"));
    await record(dir);
    // As a relay whose clock NTP stepped back 300 ms between the third and fourth edits (30 ms apart) stored them.
    const db = new Database(join(dir, "history.sqlite"));
    db.run("UPDATE history SET at = at - 300 WHERE seq >= 4");
    db.close();
    const file = join(dir, "stepped.jsonl");
    expect(cli(["history", "export", "--state-dir", dir, "--out", file]).code).toBe(0);
    const at = parseRecording(readFileSync(file, "utf8"), file).frames.map((f) => f.at);
    // The fourth is written at the third's time (no wait between them); the fifth keeps its own.
    expect(at[3]).toBe(at[2]!);
    expect(at[4]! - at[3]!).toBeGreaterThan(0);
  }, 30_000);
});

describe("stopping a replay: no update after the signal, at once, exit 128 + the signal's number", () => {
  // The second update is due 8 s after the first: a stop that waited for it would show in both the time and the update.
  const TWO_APART: Array<[number, string, string]> = [
    [0, "alice", "set_scene_band"],
    [8000, "bob", "set_script_html"],
  ];

  test("into a relay: Ctrl-C between two updates sends no more, exits 130 at once", async () => {
    const file = written(mkdtempSync(join(tmpdir(), "sova-rec-")), TWO_APART);
    const target = keep(await startInProcess([]));
    const pool = new ClientPool(() => target.port);
    const listener = await pool.register("listener");
    const replay = Bun.spawn([...SOURCE, "replay", file, "--port", String(target.port)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    await listener.next("StateBroadcast");
    const signalled = performance.now();
    replay.kill("SIGINT");
    expect(await replay.exited).toBe(130);
    expect(performance.now() - signalled).toBeLessThan(4000);
    expect(await new Response(replay.stdout).text()).toMatch(/^replayed 1 of 2 updates in \d+\.\d s\n$/);
    // Its players have left: anything they sent has been relayed, and a round trip shows it did not come.
    await target.waitForEvent("disconnected", { instance: "bob (replay)" });
    expect((await drained(listener)).filter((m) => m.type === "StateBroadcast")).toEqual([]);
    pool.closeAll();
  }, 20_000);

  test("into a page: SIGTERM between two updates exits 143 at once, saying how far it played", async () => {
    const file = written(mkdtempSync(join(tmpdir(), "sova-rec-")), TWO_APART);
    const replay = Bun.spawn([...SOURCE, "replay", file, "--watch"], { stdout: "pipe", stderr: "pipe" });
    const output = watchOutput([replay.stdout, replay.stderr]);
    // Printed just before the first update is played, in the same turn: a signal now is handled after it.
    await lineOrEnd(output, /^Playing 2 updates/, "replay --watch", 10_000);
    const signalled = performance.now();
    replay.kill("SIGTERM");
    expect(await replay.exited).toBe(143);
    expect(performance.now() - signalled).toBeLessThan(4000);
    await output.done;
    expect(output.watcher.logs).toContain("Stopped by SIGTERM after 1 of 2 updates\n");
  }, 20_000);

  test("into a page played to the end: Ctrl-C closes it, exit 0 (the replay was whole)", async () => {
    const file = written(mkdtempSync(join(tmpdir(), "sova-rec-")), TWO_APART.slice(0, 1));
    const replay = Bun.spawn([...SOURCE, "replay", file, "--watch"], { stdout: "pipe", stderr: "pipe" });
    const output = watchOutput([replay.stdout, replay.stderr]);
    await lineOrEnd(output, /^Played to the end/, "replay --watch", 10_000);
    replay.kill("SIGINT");
    expect(await replay.exited).toBe(0);
  }, 20_000);
});
