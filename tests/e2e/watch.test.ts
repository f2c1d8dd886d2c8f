/**
 * Spectators over real sockets: watching is off until a host enables it with a
 * key; a wrong key is any unknown path, and guessing is rate-limited; the page,
 * its events (snapshot, coalesced changes, resumption with Last-Event-ID) and its
 * bounds; an update no Sova could read still relayed byte for byte; keys reloaded
 * on SIGHUP; no token or key in any page, metric or log line.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { updateValues, type RelayClient } from "../../src/client/client.ts";
import { type HttpOptions, type RunningHttp, startHttp } from "../../src/http/server.ts";
import type { WatchOptions } from "../../src/http/watch.ts";
import { WATCH_CSP } from "../../src/http/watch-page.ts";
import { parseCidr } from "../../src/lib/cidr.ts";
import { createLogger } from "../../src/lib/log.ts";
import { spectatorPath, writeSpectatorFile } from "../../src/storage/spectator-file.ts";
import { keyDigest, makeKey } from "../../src/watch/index.ts";
import { cleanupAfterEach } from "../support/peers.ts";
import { ROOT } from "../support/paths.ts";
import { ClientPool, type RelayHandle, startInProcess, startProcess } from "../support/relay.ts";
import { sovaEdit } from "../support/sova-edits.ts";
import { until } from "../support/until.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const TOKEN = "watch-ensemble-token-Qw83Lz";
const keep = cleanupAfterEach();

interface Watched {
  relay: RelayHandle;
  http: RunningHttp;
  key: string;
  logs: string[];
  pool: ClientPool;
  url(path?: string): string;
}

/** A relay whose open session (or `session`) has a spectator key, with its HTTP side. */
async function watched(
  options: { flags?: string[]; session?: string; watch?: Partial<WatchOptions>; http?: Partial<HttpOptions> } = {},
): Promise<Watched> {
  const dir = mkdtempSync(join(tmpdir(), "sova-watch-"));
  const key = makeKey();
  if (options.session !== "none")
    writeSpectatorFile(spectatorPath(dir), [{ session: options.session ?? "open", digest: keyDigest(key) }]);
  const relay = keep(await startInProcess(["--state-dir", dir, ...(options.flags ?? [])]));
  const logs: string[] = [];
  const log = createLogger({ level: "debug", format: "json", write: (line) => logs.push(line) });
  const w = relay.server!.watching;
  const http = startHttp(
    {
      host: "127.0.0.1",
      port: 0,
      ...options.http,
      watch: { watcher: w.watcher, keys: w.keys, tickMs: 50, ...options.watch },
    },
    { relay: relay.server!.relay, version: "0.1.0", startedAt: Date.now(), stopping: () => false },
    log,
  );
  keep({ close: () => http.stop() } as unknown as RelayClient);
  const pool = new ClientPool(() => relay.port);
  keep({ close: () => pool.closeAll() } as unknown as RelayClient);
  return { relay, http, key, logs, pool, url: (path = "") => `http://127.0.0.1:${http.port}/watch/${key}${path}` };
}

interface SseEvent {
  id: string;
  event: string;
  data: Record<string, unknown> & { lines: Array<{ index: number }>; feed: Array<{ text: string; kind: string }> };
}

/** Reads a server-sent event stream event by event. */
async function events(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    async next(timeoutMs = 5000): Promise<SseEvent> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const fields: Record<string, string> = Object.fromEntries(
            block
              .split("\n")
              .filter((l) => !l.startsWith(":") && l.includes(": "))
              .map((l) => [l.slice(0, l.indexOf(": ")), l.slice(l.indexOf(": ") + 2)]),
          );
          if (fields.event) return { id: fields.id!, event: fields.event, data: JSON.parse(fields.data!) };
          continue;
        }
        const left = deadline - performance.now();
        if (left <= 0) throw new Error("no event in time");
        const chunk = await Promise.race([reader.read(), Bun.sleep(left).then(() => null)]);
        if (!chunk || chunk.done) throw new Error("stream ended");
        buffer += decoder.decode(chunk.value, { stream: true });
      }
    },
    close: () => reader.cancel(),
  };
}

const sameAnswer = async (a: Response, b: Response) => {
  const strip = (r: Response) => [...r.headers].filter(([k]) => k !== "date");
  expect([a.status, strip(a), await a.text()]).toEqual([b.status, strip(b), await b.text()]);
};

describe("off by default, enforced by the server", () => {
  test("without a spectator key no session is watched: /watch/ paths are unknown, and frames are not even queued", async () => {
    const w = await watched({ session: "none" });
    const alice = await w.pool.register("alice");
    await w.pool.register("bob");
    alice.sendUpdate(sovaEdit("set_script").bytes);
    await sameAnswer(await fetch(w.url()), await fetch(`http://127.0.0.1:${w.http.port}/nothing-here`));
    expect(w.relay.server!.watching.watcher.stats).toMatchObject({ sessions: 0, queued: 0, decoded: 0 });
  });

  test("a key opens its session only: the open session is not watched because another session is", async () => {
    const w = await watched({ flags: ["--token", TOKEN], session: "0123456789ab" });
    expect(w.relay.server!.watching.watcher.wants("open")).toBe(false);
    expect(w.relay.server!.watching.watcher.wants("0123456789ab")).toBe(true);
  });
});

describe("a wrong key", () => {
  test("gets what any unknown path gets, costs its address, and after ten the right key is unknown too for a while", async () => {
    const w = await watched();
    const unknown = () => fetch(`http://127.0.0.1:${w.http.port}/nothing-here`);
    const wrong = makeKey();
    for (const path of [`/watch/${wrong}`, `/watch/${wrong}/events`, "/watch/", "/watch/x/y/z"])
      await sameAnswer(await fetch(`http://127.0.0.1:${w.http.port}${path}`), await unknown());
    expect((await fetch(w.url())).status).toBe(200);
    for (let i = 0; i < 10; i++) await fetch(`http://127.0.0.1:${w.http.port}/watch/${makeKey()}`);
    await sameAnswer(await fetch(w.url()), await unknown());
    // 4 + 6 wrong keys spend the budget; the last 4 wrong ones and the right one are answered as unknown unseen.
    expect(w.http.spectators).toMatchObject({ wrongKeys: 10, keyLimited: 5 });
    const metrics = await (await fetch(`http://127.0.0.1:${w.http.port}/metrics`)).text();
    expect(metrics).toContain('sova_relay_watch_key_failures_total{reason="wrong_key"} 10');
    expect(metrics).toContain('sova_relay_watch_key_failures_total{reason="cooling_down"} 5');
    expect(w.logs.some((l) => l.includes('"event":"watch_key_rejected"'))).toBe(true);
    for (const l of w.logs) expect(l).not.toContain(wrong);
  });

  test("a burst of wrong keys is logged in full when its window ends (10 s; 1 s here), with no request after it", async () => {
    const w = await watched({ watch: { logWindowMs: 1000 } });
    const rejected = () =>
      w.logs.map((l) => JSON.parse(l)).filter((e: { event: string }) => e.event === "watch_key_rejected");
    const started = performance.now();
    for (let i = 0; i < 4; i++) await fetch(`http://127.0.0.1:${w.http.port}/watch/${makeKey()}`);
    expect(rejected()).toHaveLength(1);
    await until(() => rejected().length === 2, "the burst's line", 6000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect(rejected().map((e: { wrong: number; limited: number }) => [e.wrong, e.limited])).toEqual([
      [1, 0],
      [3, 0],
    ]);
    // That line opened the next window, which holds these two; stopping the HTTP side writes them.
    await fetch(`http://127.0.0.1:${w.http.port}/watch/${makeKey()}`);
    await fetch(`http://127.0.0.1:${w.http.port}/watch/${makeKey()}`);
    w.http.stop();
    expect(rejected().map((e: { wrong: number }) => e.wrong)).toEqual([1, 3, 2]);
    expect(w.http.spectators).toMatchObject({ wrongKeys: 6 });
  });
});

describe("behind a reverse proxy (--trust-proxy)", () => {
  test("wrong keys cool the guesser's forwarded address only, not the proxy's, so the audience still gets in", async () => {
    const w = await watched({ http: { trustProxy: [parseCidr("127.0.0.1/32")] } });
    const from = (address: string, path: string) =>
      fetch(`http://127.0.0.1:${w.http.port}${path}`, { headers: { "X-Forwarded-For": address } });
    for (let i = 0; i < 11; i++) await from("198.51.100.7", `/watch/${makeKey()}`);
    expect((await from("198.51.100.7", `/watch/${w.key}`)).status).toBe(404);
    expect((await from("198.51.100.8", `/watch/${w.key}`)).status).toBe(200);
    expect(w.http.spectators).toMatchObject({ wrongKeys: 10, keyLimited: 2 });
  });
});

describe("the page and its events", () => {
  test("the first view is rendered by the server, escaped, under a script-by-hash policy; nothing secret in it", async () => {
    const w = await watched();
    const alice = await w.pool.register("alice");
    for (const name of ["set_scene_band", "set_script_html", "chat_html"]) alice.sendUpdate(sovaEdit(name).bytes);
    await until(() => w.relay.server!.watching.watcher.stats.decoded === 3, "decoded");
    const page = await fetch(w.url());
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toBe(WATCH_CSP);
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await page.text();
    expect(html).toContain("&#60;img src=x onerror=alert(1)&#62;");
    expect(html).toContain("&#60;/script&#62;&#60;script&#62;alert(&#34;xss&#34;)&#60;/script&#62;");
    expect(html).not.toContain("<img");
    expect(html.match(/<script>/g)).toHaveLength(1);
    expect(html).not.toContain(w.key);
    expect(html).toContain('<li class="player" style="--who: hsl(');
  });

  test("a snapshot first, then coalesced changes: a burst of edits comes as a few events with only what changed", async () => {
    const w = await watched();
    const alice = await w.pool.register("alice");
    alice.sendUpdate(sovaEdit("set_scene_band").bytes);
    await until(() => w.relay.server!.watching.watcher.stats.decoded === 1, "the scene decoded");
    const stream = await events(w.url("/events"));
    const snapshot = await stream.next();
    expect(snapshot.event).toBe("snapshot");
    expect(snapshot.data.lineCount).toBe(4);
    expect(snapshot.id).toMatch(/^[a-z0-9]+:\d+$/);
    for (let i = 0; i < 20; i++) alice.sendUpdate(sovaEdit(i % 2 ? "set_script" : "set_script_empty").bytes);
    const seen: SseEvent[] = [];
    while (seen.reduce((n, e) => n + e.data.feed.length, 0) < 20) seen.push(await stream.next());
    expect(seen.every((e) => e.event === "delta")).toBe(true);
    expect(seen.length).toBeLessThan(10);
    expect(new Set(seen.flatMap((e) => e.data.lines.map((l) => l.index)))).toEqual(new Set([0]));
    await stream.close();
  });

  test("Last-Event-ID resumes with what changed since; an unknown id gets a snapshot", async () => {
    const w = await watched();
    const alice = await w.pool.register("alice");
    alice.sendUpdate(sovaEdit("set_scene_band").bytes);
    await until(() => w.relay.server!.watching.watcher.stats.decoded === 1, "decoded");
    const first = await events(w.url("/events"));
    const { id } = await first.next();
    await first.close();
    alice.sendUpdate(sovaEdit("set_script_language_boinx").bytes); // line 2
    alice.sendUpdate(sovaEdit("chat").bytes);
    await until(() => w.relay.server!.watching.watcher.stats.decoded === 3, "decoded");
    const again = await events(w.url("/events"), { "Last-Event-ID": id });
    const resumed = await again.next();
    expect(resumed.event).toBe("delta");
    expect(resumed.data.lines.map((l) => l.index)).toEqual([2]);
    expect(resumed.data.feed.map((e) => e.text)).toEqual(["L2 F0 language boinx", "hi"]);
    await again.close();
    const stranger = await events(w.url("/events"), { "Last-Event-ID": "elsewhere:3" });
    expect((await stranger.next()).event).toBe("snapshot");
    await stranger.close();
  });

  test("an update no Sova could read is relayed byte for byte and shown as unreadable with its size", async () => {
    const w = await watched();
    const alice = await w.pool.register("alice");
    const bob = await w.pool.register("bob");
    const garbage = Uint8Array.of(0xc1, 0xff, 0x00, 0x81, 0x80, 0x90, 0xdd, 0xff);
    alice.sendUpdate(garbage);
    const got = await bob.next("StateBroadcast");
    expect(Buffer.compare(updateValues(got), garbage)).toBe(0);
    await until(() => w.relay.server!.watching.watcher.stats.unreadable === 1, "counted");
    const view = (await (await fetch(w.url("/view"))).json()) as SseEvent["data"];
    expect(view.feed.at(-1)).toMatchObject({ kind: "unreadable", by: "alice" });
    expect(view.feed.at(-1)!.text).toStartWith("unreadable edit (8 bytes)");
    const metrics = await (await fetch(`http://127.0.0.1:${w.http.port}/metrics`)).text();
    expect(metrics).toContain('sova_relay_watch_updates_total{outcome="unreadable"} 1');
  });

  test("a burst of unreadable updates: the first logged at once, the rest counted and logged when the 10 s end, with the last one's reason", async () => {
    const w = await watched();
    const alice = await w.pool.register("alice");
    const bob = await w.pool.register("bob");
    // 0xc1 is no MessagePack at all: unreadable whatever follows; the sizes tell the three apart in the reason.
    for (const size of [8, 9, 10]) alice.sendUpdate(Uint8Array.from({ length: size }, (_, i) => (i === 0 ? 0xc1 : 0)));
    for (let n = 0; n < 3; n++) await bob.next("StateBroadcast");
    const first = await w.relay.waitForEvent("watch_unreadable");
    expect(first).toMatchObject({ unreadable: 1, reason: expect.stringMatching(/^unreadable edit \(8 bytes\)/) });
    // Nothing more comes: the count held back is written when its window ends all the same.
    const rest = await w.relay.waitForEvent("watch_unreadable", { unreadable: 2 }, 15_000);
    expect(rest.reason).toStartWith("unreadable edit (10 bytes)");
    expect(w.relay.events.filter((e) => e.event === "watch_unreadable").length).toBe(2);
  }, 25_000);
});

describe("bounds", () => {
  test("per relay, per address and per session, each a clear 503; a HEAD takes no place", async () => {
    const relayCap = await watched({ watch: { maxSpectators: 1 } });
    expect((await fetch(relayCap.url("/events"), { method: "HEAD" })).status).toBe(200);
    expect(relayCap.http.spectators!.spectators).toBe(0);
    const a = await events(relayCap.url("/events"));
    const refused = await fetch(relayCap.url("/events"));
    expect([refused.status, await refused.text()]).toEqual([
      503,
      "too many spectators on this relay (1); try again later\n",
    ]);
    expect(refused.headers.get("retry-after")).toBe("10");
    await a.close();

    const perAddress = await watched({ watch: { maxSpectatorsPerAddress: 1 }, http: { host: "::" } });
    const at = (host: string) => fetch(`http://${host}:${perAddress.http.port}/watch/${perAddress.key}/events`);
    const first = await at("127.0.0.1");
    const second = await at("127.0.0.1");
    expect([second.status, await second.text()]).toEqual([
      503,
      "too many spectators from your address (1); try again later\n",
    ]);
    const other = await at("[::1]");
    expect(other.status).toBe(200);
    await first.body!.cancel();
    await other.body!.cancel();

    const perSession = await watched({ watch: { maxSpectatorsPerSession: 1 } });
    const one = await events(perSession.url("/events"));
    const two = await fetch(perSession.url("/events"));
    expect([two.status, await two.text()]).toEqual([503, "too many spectators of this session (1); try again later\n"]);
    await one.close();
    const metrics = await (await fetch(`http://127.0.0.1:${perSession.http.port}/metrics`)).text();
    expect(metrics).toContain('sova_relay_spectators_closed_total{reason="session_cap"} 1');
  });

  test("a spectator that stops reading is cut, counted and logged; one that reads goes on", async () => {
    const w = await watched({ watch: { backlogBytes: 64 * 1024, tickMs: 20 } });
    const alice = await w.pool.register("alice");
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: w.http.port,
      socket: { data() {}, close() {}, error() {} },
    });
    stalled.write(`GET /watch/${w.key}/events HTTP/1.1\r\nHost: relay\r\n\r\n`);
    stalled.pause();
    await until(() => w.http.spectators!.spectators === 1, "the stalled spectator subscribed");
    // Whole scenes of 0.9 MiB, each a new view: kernel buffers fill within a few.
    const big = sovaEdit("set_scene_large").bytes;
    const band = sovaEdit("set_scene_band").bytes;
    let n = 0;
    while (w.http.spectators!.cut === 0) {
      alice.sendUpdate(n++ % 2 ? big : band);
      await Bun.sleep(25);
      if (n > 2000) throw new Error("never cut");
    }
    expect(w.logs.some((l) => l.includes('"event":"spectators_limited"'))).toBe(true);
    expect(w.http.spectators!.spectators).toBe(0);
    const reading = await events(w.url("/events"));
    expect((await reading.next()).event).toBe("snapshot");
    await reading.close();
    stalled.terminate();
  }, 60_000);
});

describe("keys on SIGHUP, and nothing secret anywhere", () => {
  test("enable, reload, watch; disable, reload, unknown again: no token or key in pages, metrics or logs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-watch-"));
    const relay = keep(
      await startProcess(SOURCE)(["--state-dir", dir, "--token", TOKEN, "--http-port", "any", "--history", "50"]),
    );
    const pool = new ClientPool(() => relay.port);
    keep({ close: () => pool.closeAll() } as unknown as RelayClient);
    const alice = await pool.register("alice", { token: TOKEN });
    await pool.register("bob", { token: TOKEN });
    alice.sendUpdate(sovaEdit("set_scene_band").bytes);
    const http = `http://127.0.0.1:${relay.httpPort}`;
    const status = (await (await fetch(`${http}/status`)).json()) as { sessions: Array<{ id: string }> };
    const session = status.sessions[0]!.id;
    const enabled = Bun.spawnSync([...SOURCE, "watch", "enable", "--state-dir", dir, "--session", session]);
    expect(enabled.exitCode).toBe(0);
    const key = /\/watch\/([A-Za-z0-9_-]{32})/.exec(enabled.stdout.toString())![1]!;
    relay.process!.kill("SIGHUP");
    await relay.waitForEvent("watch_keys_loaded", { sessions: 1 });
    // Primed from the session's history: the scene sent before watching began is there.
    const lines = async () =>
      ((await (await fetch(`${http}/watch/${key}/view`)).json()) as { lineCount: number }).lineCount;
    // Decoding runs on the watcher's own timer (a slice every 50 ms) and history is written in batches:
    // wait for both by time, not by a count of fetches, which a quick machine ran through before either.
    const deadline = performance.now() + 10_000;
    while ((await lines()) !== 4) if (performance.now() > deadline) throw new Error("not primed from history");
    const page = await fetch(`${http}/watch/${key}`);
    expect(page.status).toBe(200);
    const bodies = [
      await page.text(),
      await (await fetch(`${http}/status`)).text(),
      await (await fetch(`${http}/metrics`)).text(),
      await (await fetch(`${http}/`)).text(),
    ];
    Bun.spawnSync([...SOURCE, "watch", "disable", "--state-dir", dir, "--session", session]);
    const before = relay.events.length;
    relay.process!.kill("SIGHUP");
    await relay.waitForEvent("watch_keys_loaded", (e) => relay.events.indexOf(e) >= before && e.sessions === 0);
    expect((await fetch(`${http}/watch/${key}`)).status).toBe(404);
    for (const text of [...bodies, relay.logs.join("")]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(key);
    }
  }, 30_000);
});
