/**
 * docs/reference/*.md say what the code says: each page is made again from the
 * code (scripts/reference/) and compared with the file. `npm run docs` rewrites
 * them after a change.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PAGES, REFERENCE_DIR } from "../../scripts/reference/index.ts";
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
