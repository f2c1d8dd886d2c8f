/**
 * `npm run docs`: writes the reference pages under docs/reference/ from the
 * code (scripts/reference/). `--check` writes nothing and exits 1 when a page
 * differs, naming it.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PAGES, REFERENCE_DIR } from "./reference/index.ts";

const root = join(import.meta.dir, "..");
const check = process.argv.includes("--check");
let stale = 0;
mkdirSync(join(root, REFERENCE_DIR), { recursive: true });
for (const [name, make] of Object.entries(PAGES)) {
  const path = join(root, REFERENCE_DIR, name);
  const text = await make();
  let old = "";
  try {
    old = readFileSync(path, "utf8");
  } catch {}
  if (old === text) continue;
  stale++;
  if (check) console.error(`${REFERENCE_DIR}/${name} differs from what the code says: run npm run docs`);
  else {
    writeFileSync(path, text);
    console.log(`wrote ${REFERENCE_DIR}/${name}`);
  }
}
if (check && stale > 0) process.exit(1);
