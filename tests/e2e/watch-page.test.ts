/**
 * The spectator page in a real headless browser (Debian's chromium, driven by
 * playwright-core): a cell changes within a second of an edit sent by a Sova-like
 * client; after the page's connection drops, it comes back with what changed
 * meanwhile; markup in scripts, names and chat stays text, with no Content
 * Security Policy violation; controls (NUL, ESC, bidi overrides) show as escapes,
 * live and as served; screenshots at projector and phone sizes. Skipped,
 * loudly, where chromium is not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pack } from "msgpackr";
import type { Page } from "playwright-core";
import { type RunningHttp, startHttp } from "../../src/http/server.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { spectatorPath, writeSpectatorFile } from "../../src/storage/spectator-file.ts";
import { keyDigest, makeKey } from "../../src/watch/index.ts";
import { ROOT } from "../support/paths.ts";
import { type RelayHandle, startInProcess } from "../support/relay.ts";
import { connectSovaDouble, type SovaDouble } from "../support/sova-double.ts";
import { sovaEdit } from "../support/sova-edits.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(ROOT, "tests", "output");
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The page's text of a cell's script. */
const scriptOf = (page: Page, line: number, frame: number) =>
  page.locator(`#cell-${line}-${frame} .script`).textContent({ timeout: 1000 });

if (!existsSync(CHROMIUM)) {
  console.warn(`SKIPPED: spectator page browser test: no chromium at ${CHROMIUM} (apt-get install chromium)`);
  describe("spectator page in a browser", () => {
    test.skip("needs chromium", () => {});
  });
} else {
  describe("spectator page in a browser", () => {
    let relay: RelayHandle;
    let http: RunningHttp;
    let url: string;
    const players: SovaDouble[] = [];
    const httpOn = (port: number) => {
      const w = relay.server!.watching;
      return startHttp(
        { host: "127.0.0.1", port, watch: { watcher: w.watcher, keys: w.keys } },
        { relay: relay.server!.relay, version: "0.1.0", startedAt: Date.now(), stopping: () => false },
        silentLogger,
      );
    };

    beforeAll(async () => {
      const dir = mkdtempSync(join(tmpdir(), "sova-watch-page-"));
      const key = makeKey();
      writeSpectatorFile(spectatorPath(dir), [{ session: "open", digest: keyDigest(key) }]);
      relay = await startInProcess(["--state-dir", dir]);
      http = httpOn(0);
      url = `http://127.0.0.1:${http.port}/watch/${key}`;
      players.push(await connectSovaDouble(relay.port, "alice"), await connectSovaDouble(relay.port, "<b>bob</b>"));
      players.push(await connectSovaDouble(relay.port, "東京 🎹"));
    });
    afterAll(async () => {
      for (const p of players) p.close();
      http.stop();
      await relay.stop();
    });

    test("edits appear within a second; a dropped connection comes back with what changed; markup stays text", async () => {
      const { chromium } = await import("playwright-core");
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
      try {
        const [alice, bob, tokyo] = players as [SovaDouble, SovaDouble, SovaDouble];
        await alice.edit(sovaEdit("set_scene_band").bytes, 1n);
        await tokyo.edit(sovaEdit("chat_html").bytes, 2n);
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        const problems: string[] = [];
        page.on("pageerror", (e) => problems.push(e.message));
        // Failed loads are judged by their address below; every other console error is a problem.
        page.on(
          "console",
          (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(m.text()),
        );
        const failed: string[] = [];
        page.on("response", (r) => r.status() >= 400 && failed.push(new URL(r.url()).pathname));
        page.on("dialog", (d) => {
          problems.push(`dialog: ${d.message()}`);
          void d.dismiss();
        });
        // Kept across navigations: every policy violation any of the page's documents meets.
        await page.addInitScript(
          "window.violations = []; addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));",
        );
        const violations = () => page.evaluate(() => (globalThis as unknown as { violations: string[] }).violations);
        await page.goto(url);
        await page.getByText("live", { exact: true }).waitFor();
        expect(await scriptOf(page, 0, 0)).toBe('(dirt "bd")');

        // An edit by a Sova-like client: on screen within a second.
        const sent = performance.now();
        await bob.edit(sovaEdit("set_script").bytes, 3n); // line 0, frame 2: "n c"
        await page.locator("#cell-0-2 .script", { hasText: /^n c$/ }).waitFor({ timeout: 1000 });
        const shownMs = performance.now() - sent;
        expect(shownMs).toBeLessThan(1000);
        expect(await page.locator("#cell-0-2").getAttribute("class")).toContain("last");
        expect(await page.locator("#cell-0-2 .by").textContent()).toBe("<b>bob</b>");

        // Markup in a script: shown as text, nothing run, no element made, no policy broken.
        await alice.edit(sovaEdit("set_script_html").bytes, 4n); // line 0, frame 1
        await page.locator("#cell-0-1 .script", { hasText: "<img src=x" }).waitFor();
        expect(await page.locator("img").count()).toBe(0);
        expect(await page.locator("b", { hasText: /^bob$/ }).count()).toBe(0); // the name "<b>bob</b>" is text
        expect(await page.getByText("</script><img src=x onerror=alert(1)>", { exact: false }).count()).toBe(1);

        // The page loses its connection; edits go on meanwhile; it comes back with them.
        const port = http.port;
        http.stop();
        await page.getByText("reconnecting…", { exact: true }).waitFor();
        await alice.edit(sovaEdit("set_frame_name_unicode").bytes, 5n); // line 0, frame 1 named
        await tokyo.edit(sovaEdit("set_line_speed_factor").bytes, 6n); // line 1 at half speed
        await tokyo.edit(sovaEdit("chat_unicode").bytes, 7n);
        await Bun.sleep(0);
        http = httpOn(port);
        await page.getByText("live", { exact: true }).waitFor({ timeout: 10_000 });
        await page.locator("#cell-0-1 .fname", { hasText: "🎹 drop" }).waitFor();
        expect(await page.locator("#line-1 .line-head").textContent()).toContain("×0.5");
        expect(await page.locator("#feed .entry").first().textContent()).toContain("on y va");
        expect(await page.locator("#feed .entry").count()).toBe(7);

        expect(await violations()).toEqual([]);
        // The last edit, marked in its author's colour, is what a projector follows.
        await bob.edit(sovaEdit("set_script_multiline").bytes, 8n); // line 2, frame 2 of 2: frame 0
        await page.locator("#cell-2-0 .by", { hasText: "<b>bob</b>" }).waitFor({ timeout: 1000 });
        mkdirSync(OUTPUT, { recursive: true });
        await page.setViewportSize({ width: 1920, height: 1080 });
        await page.goto(`${url}?projector=1`);
        await page.getByText("live", { exact: true }).waitFor();
        expect(await page.locator("body").getAttribute("class")).toContain("projector");
        await page.screenshot({ path: join(OUTPUT, "watch-projector.png") });

        await page.setViewportSize({ width: 390, height: 844 });
        await page.goto(url);
        await page.getByText("live", { exact: true }).waitFor();
        await page.screenshot({ path: join(OUTPUT, "watch-phone.png"), fullPage: true });
        const overflow = await page.evaluate(
          "document.documentElement.scrollWidth - document.documentElement.clientWidth",
        );
        expect(overflow).toBeLessThanOrEqual(0); // the grid scrolls in its own box; the page does not
        expect(await violations()).toEqual([]);
        expect(problems).toEqual([]);
        expect(failed.filter((p) => p !== "/favicon.ico")).toEqual([]);
      } finally {
        await browser.close();
      }
    }, 60_000);

    test("controls in players' text (NUL, ESC, a bidi override) show as escapes, live and as served", async () => {
      const { chromium } = await import("playwright-core");
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
      try {
        const alice = players[0]!;
        // An override would show "ok)1(tixe" reversed to the audience, as something it is not.
        const sneaky = "ok\u202e)1(tixe\u2066 \u0000\u001b[2J\r\nend\rx";
        const visible = "ok\\u202E)1(tixe\\u2066 \\u0000\\u001B[2J\nend\\u000Dx";
        const texts = (page: Page) =>
          Promise.all(
            ["#cell-0-0 .script", "#feed .entry.chat .text"].map((s) => page.locator(s).first().textContent()),
          );
        const page = await browser.newPage();
        await page.goto(url);
        await page.getByText("live", { exact: true }).waitFor();
        await alice.edit(pack({ Chat: sneaky }), 20n);
        await alice.edit(pack({ SetScript: [0, 0, sneaky, "Immediate"] }), 21n);
        await page.locator("#cell-0-0 .script", { hasText: "ok\\u202E" }).waitFor({ timeout: 2000 });
        expect(await texts(page)).toEqual([visible, visible]);
        // The page as the relay serves it, with no script to redraw it.
        const served = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
        await served.goto(url);
        expect(await texts(served)).toEqual([visible, visible]);
        for (const p of [page, served]) {
          const shown = await p.locator("body").textContent();
          for (const raw of ["\u0000", "\u001b", "\r", "\u202e", "\u2066"]) expect(shown).not.toContain(raw);
        }
      } finally {
        await browser.close();
      }
    }, 30_000);
  });
}
