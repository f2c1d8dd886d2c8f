/**
 * `npm run docs`: writes the reference pages under docs/reference/ from the
 * code (scripts/reference/). `--check` writes nothing and exits 1 when a page
 * differs, naming it.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PAGES, PAGES_WITH_REGIONS, REFERENCE_DIR } from "./reference/index.ts";
import { fillRegions } from "./reference/regions.ts";

const root = join(import.meta.dir, "..");
const check = process.argv.includes("--check");
let stale = 0;

function update(file: string, text: string): void {
  const path = join(root, file);
  let old = "";
  try {
    old = readFileSync(path, "utf8");
  } catch {}
  if (old === text) return;
  stale++;
  if (check) console.error(`${file} differs from what the code says: run npm run docs`);
  else {
    writeFileSync(path, text);
    console.log(`wrote ${file}`);
  }
}

mkdirSync(join(root, REFERENCE_DIR), { recursive: true });
for (const [name, make] of Object.entries(PAGES)) update(`${REFERENCE_DIR}/${name}`, await make());
for (const file of PAGES_WITH_REGIONS) update(file, fillRegions(readFileSync(join(root, file), "utf8")));
if (check && stale > 0) process.exit(1);
