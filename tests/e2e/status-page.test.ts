/**
 * The status page in a real headless browser (Debian's chromium, driven by
 * playwright-core; no browser download). Skipped, loudly, where chromium is
 * not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { startHttp, type RunningHttp } from "../../src/http/server.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { ClientPool, startInProcess, type RelayHandle } from "../support/relay.ts";
import { ROOT } from "../support/paths.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(ROOT, "tests", "output");

if (!existsSync(CHROMIUM)) {
  console.warn(`SKIPPED: status page browser test: no chromium at ${CHROMIUM} (apt-get install chromium)`);
  describe("status page in a browser", () => {
    test.skip("needs chromium", () => {});
  });
} else {
  describe("status page in a browser", () => {
    let relay: RelayHandle;
    let http: RunningHttp;
    let pool: ClientPool;
    beforeAll(async () => {
      relay = await startInProcess();
      http = startHttp(
        { host: "127.0.0.1", port: 0, eventIntervalMs: 200 },
        { relay: relay.server!.relay, version: "0.1.0", startedAt: Date.now(), stopping: () => false },
        silentLogger,
      );
      pool = new ClientPool(() => relay.port);
    });
    afterAll(async () => {
      pool.closeAll();
      http.stop();
      await relay.stop();
    });

    test("an instance appears and disappears without a reload; names stay text", async () => {
      const { chromium } = await import("playwright-core");
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-quic",
          "--no-first-run",
          "--disable-sync",
        ],
      });
      try {
        const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
        const errors: string[] = [];
        page.on("pageerror", (e) => errors.push(e.message));
        page.on("dialog", (d) => {
          errors.push(`dialog: ${d.message()}`);
          void d.dismiss();
        });
        await page.goto(http.url);
        await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
        await page.getByText("live", { exact: true }).waitFor();

        const alice = await pool.register("alice-studio");
        const evil = await pool.register("<img src=x onerror=alert(1)>");
        await pool.register("tokyo-laptop");
        await page.getByText("alice-studio").waitFor();
        await page.getByText("<img src=x onerror=alert(1)>").waitFor();
        mkdirSync(OUTPUT, { recursive: true });
        await page.screenshot({ path: join(OUTPUT, "status-page.png"), fullPage: true });
        expect(await page.locator("img").count()).toBe(0);

        alice.close();
        await page.getByText("alice-studio").waitFor({ state: "detached" });
        evil.close();
        // never reloaded
        expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);

        await page.setViewportSize({ width: 390, height: 800 });
        await page.screenshot({ path: join(OUTPUT, "status-page-phone.png"), fullPage: true });
        const overflow = await page.evaluate(() => {
          const root = (
            globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }
          ).document.documentElement;
          return root.scrollWidth - root.clientWidth;
        });
        expect(overflow).toBeLessThanOrEqual(0); // readable on a phone: no sideways scrolling
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
      }
    }, 60000);
  });
}
