/**
 * Every fenced block in the docs (README.md, docs/**, bench/README.md) is run by a test, or
 * says why not. The mechanism (docs/development.md, "Recipes"):
 *   - the line above each fence is `<!-- recipe: ID -->` (something a reader runs or copies) or
 *     `<!-- not a recipe: WHY -->` (what a program prints, a map of files);
 *   - RECIPES below says who runs each ID: a test file, which must read the block with
 *     `recipe("ID")` (tests/support/recipes.ts) so it runs the doc's own text; or .ci/run, which
 *     must contain each command of the block; or `notTested` with the reason, and then the doc
 *     says "not tested" next to the block;
 *   - a block without a marker, an ID without an entry, an entry whose block is gone, or a test
 *     that does not read its recipe fails here; so does a block marked `not a recipe: the same
 *     as recipe ID in FILE, ...` that is not that recipe word for word.
 * A new recipe therefore needs its test before the suite passes.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/paths.ts";
import { allBlocks, type Block } from "../support/recipes.ts";

type Runner = { test: string } | { ci: string } | { notTested: string };

/** Which test runs each recipe. Paths from the project root. */
export const RECIPES: Record<string, Runner> = {
  install: { test: "tests/packaging/vps.test.ts" },
  "install-by-hand": { test: "tests/packaging/vps.test.ts" },
  "docker-run": { test: "tests/packaging/docker.test.ts" },
  "quick-start": { test: "tests/packaging/commands.test.ts" },
  "test-command": { ci: "the tests step: npm install, then npm test" },
  "tunnel-oneliner": { test: "tests/packaging/player.test.ts" },
  caddyfile: { test: "tests/packaging/caddy.test.ts" },
  nginx: { test: "tests/packaging/nginx.test.ts" },
  "nginx-relay": { test: "tests/packaging/player.test.ts" },
  "bad-value": { test: "tests/packaging/commands.test.ts" },
  cluster: { test: "tests/packaging/cluster.test.ts" },
  "compose-cluster": { test: "tests/packaging/compose.test.ts" },
  "nats-gateways": { test: "tests/packaging/cluster.test.ts" },
  "cluster-region": { test: "tests/packaging/cluster.test.ts" },
  token: { test: "tests/packaging/commands.test.ts" },
  "tls-relay": { test: "tests/packaging/commands.test.ts" },
  "tunnel-tls": { test: "tests/packaging/commands.test.ts" },
  stunnel: { test: "tests/packaging/commands.test.ts" },
  build: { ci: "the build steps: npm run build, then npm run build:release" },
  "systemd-unit": { test: "tests/packaging/vps.test.ts" },
  "systemd-install": { test: "tests/packaging/vps.test.ts" },
  "docker-build": { test: "tests/support/podman.ts" },
  "docker-run-history": { test: "tests/packaging/docker.test.ts" },
  "docker-buildx": {
    notTested: "multi-arch needs buildx with QEMU and a registry to push to; the release workflow runs it",
  },
  compose: { test: "tests/packaging/compose.test.ts" },
  "compose-build": { test: "tests/packaging/compose.test.ts" },
  "docker-upgrade": { test: "tests/packaging/docker.test.ts" },
  "docker-backup": { test: "tests/packaging/docker.test.ts" },
  "docker-restore": { test: "tests/packaging/docker.test.ts" },
  "prometheus-yml": { test: "tests/packaging/prometheus-docs.test.ts" },
  "prometheus-container": { test: "tests/packaging/docker.test.ts" },
  "history-clear": { test: "tests/e2e/docs-recipes.test.ts" },
  "nats-routed": { test: "tests/e2e/cluster-docs.test.ts" },
  "watch-enable": { test: "tests/e2e/watch-docs.test.ts" },
  "history-export": { test: "tests/e2e/watch-docs.test.ts" },
  replay: { test: "tests/e2e/watch-docs.test.ts" },
  "replay-watch": { test: "tests/e2e/watch-docs.test.ts" },
  bench: { notTested: "the benchmark runs for minutes; its parts have tests in tests/unit/bench" },
};

const blocks = allBlocks();
const recipes = blocks.filter(
  (b): b is Block & { marker: { kind: "recipe"; id: string } } => b.marker?.kind === "recipe",
);
const ciRun = readFileSync(join(ROOT, ".ci", "run"), "utf8");

/** The commands of a block, without comments, continuation lines joined. */
function commands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .flatMap((l) => l.replace(/\s+#.*$/, "").split("&&"))
    .map((c) => c.trim())
    .filter((c) => c !== "" && !c.startsWith("#"));
}

describe("every fenced block in the docs is run by a test or says why not", () => {
  test("each block has a marker line above it", () => {
    const bare = blocks.filter((b) => b.marker === null).map((b) => `${b.file}:${b.line}`);
    expect(bare).toEqual([]);
  });

  test("recipe ids are unique", () => {
    const seen = new Map<string, string>();
    const twice: string[] = [];
    for (const b of recipes) {
      const where = `${b.file}:${b.line}`;
      if (seen.has(b.marker.id)) twice.push(`${b.marker.id}: ${seen.get(b.marker.id)} and ${where}`);
      seen.set(b.marker.id, where);
    }
    expect(twice).toEqual([]);
  });

  test("every recipe in the docs has an entry in RECIPES, and every entry a recipe in the docs", () => {
    const inDocs = new Set(recipes.map((b) => b.marker.id));
    expect(recipes.filter((b) => !(b.marker.id in RECIPES)).map((b) => `${b.marker.id} (${b.file}:${b.line})`)).toEqual(
      [],
    );
    expect(Object.keys(RECIPES).filter((id) => !inDocs.has(id))).toEqual([]);
  });

  test("a recipe's test exists and reads the recipe from the doc", () => {
    const wrong: string[] = [];
    for (const [id, runner] of Object.entries(RECIPES)) {
      if (!("test" in runner)) continue;
      const path = join(ROOT, runner.test);
      if (!existsSync(path)) wrong.push(`${id}: ${runner.test} does not exist`);
      else if (!readFileSync(path, "utf8").includes(`recipe("${id}")`))
        wrong.push(`${id}: ${runner.test} never calls recipe("${id}")`);
    }
    expect(wrong).toEqual([]);
  });

  test(".ci/run runs each command of the recipes it is named for", () => {
    const missing: string[] = [];
    for (const b of recipes) {
      if (!("ci" in (RECIPES[b.marker.id] ?? {}))) continue;
      for (const c of commands(b.text)) if (!ciRun.includes(c)) missing.push(`${b.marker.id}: ${c}`);
    }
    expect(missing).toEqual([]);
  });

  test("a block marked 'the same as recipe ID in FILE' is that recipe word for word", () => {
    const copies = blocks.flatMap((b) => {
      const same = b.marker?.kind === "none" ? /^the same as recipe ([a-z0-9-]+) in (\S+),/.exec(b.marker.why) : null;
      return same ? [{ copy: b, id: same[1]!, file: same[2]! }] : [];
    });
    const differ = copies
      .filter(({ copy, id, file }) => {
        const original = recipes.find((r) => r.marker.id === id);
        return original?.file !== file || original.text !== copy.text;
      })
      .map(({ copy, id, file }) => `${copy.file}:${copy.line} is not recipe ${id} of ${file}`);
    expect(differ).toEqual([]);
  });

  test("a recipe no test runs says so in the doc, next to it", () => {
    const silent = recipes
      .filter((b) => "notTested" in (RECIPES[b.marker.id] ?? {}) && !/not\s+tested/i.test(b.context))
      .map((b) => `${b.marker.id} (${b.file}:${b.line})`);
    expect(silent).toEqual([]);
  });
});
