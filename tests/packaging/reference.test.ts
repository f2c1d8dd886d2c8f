/**
 * docs/reference/*.md say what the code says: each page is made again from the
 * code (scripts/reference/) and compared with the file. `npm run docs` rewrites
 * them after a change.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PAGES, PAGES_WITH_REGIONS, REFERENCE_DIR } from "../../scripts/reference/index.ts";
import { fillRegions } from "../../scripts/reference/regions.ts";
import { CLEAR_OPTIONS } from "../../src/cli/history.ts";
import { HEALTH_OPTIONS } from "../../src/cli/health.ts";
import { TUNNEL_OPTIONS } from "../../src/cli/tunnel.ts";
import { OPTIONS } from "../../src/host/config.ts";
import { describeOption, helpText, type OptionTable, rowsOf } from "../../src/lib/options.ts";
import { ROOT } from "../support/paths.ts";

// prom-client's process metrics differ by platform (open file descriptors are Linux's): the page is Linux's.
const linuxOnly = new Set(["metrics.md"]);
if (process.platform !== "linux")
  console.warn(`SKIP: ${REFERENCE_DIR}/metrics.md check because it lists Linux's process metrics (run it on Linux)`);

describe("generated reference pages", () => {
  for (const [name, make] of Object.entries(PAGES)) {
    test.skipIf(linuxOnly.has(name) && process.platform !== "linux")(
      `${REFERENCE_DIR}/${name} is what the code says (else: npm run docs)`,
      async () => {
        const onDisk = readFileSync(join(ROOT, REFERENCE_DIR, name), "utf8");
        expect(onDisk).toBe(await make());
      },
    );
  }
});

describe("generated regions of hand-written pages", () => {
  for (const file of PAGES_WITH_REGIONS) {
    test(`${file}'s generated regions are what the code says (else: npm run docs)`, () => {
      const text = readFileSync(join(ROOT, file), "utf8");
      expect(text).toBe(fillRegions(text));
    });
  }
});

describe("--help and docs/reference/options.md share one text", () => {
  const page = readFileSync(join(ROOT, REFERENCE_DIR, "options.md"), "utf8");
  const commands: Array<[string[], OptionTable<never>]> = [
    [[], OPTIONS as OptionTable<never>],
    [["tunnel"], TUNNEL_OPTIONS as OptionTable<never>],
    [["health"], HEALTH_OPTIONS as OptionTable<never>],
    [["history", "clear"], CLEAR_OPTIONS as OptionTable<never>],
  ];
  for (const [command, table] of commands) {
    test(`sova-relay ${[...command, "--help"].join(" ")} shows each option's description and facts as the page does`, () => {
      const help = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), ...command, "--help"], {
        stdout: "pipe",
      }).stdout.toString();
      // --help wraps its lines to the terminal: the same words, whatever the line breaks.
      const words = (text: string) => text.replace(/\s+/g, " ");
      for (const row of rowsOf(table)) {
        const doc = describeOption(row);
        expect(words(help)).toContain(words(helpText(doc)));
        expect(page).toContain(`| ${doc.description.replace(/\|/g, "\\|")} |`);
      }
    });
  }
});
