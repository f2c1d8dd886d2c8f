/**
 * docs/development.md's layers are the tree's: every folder its diagram and table name exists
 * under src/, every folder under src/ is in both, and every src/ path the page names is there.
 * A folder moved or added without the page (or the page without the folder) fails here.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/paths.ts";

const PAGE = "docs/development.md";
const text = readFileSync(join(ROOT, PAGE), "utf8");

/** The "## The layers" section, up to the next heading of its level. */
const section = text.split(/^## /m).find((part) => part.startsWith("The layers\n")) ?? "";

/** The folders the table lists: its rows' first cells, `| src/<folder> | ... |`. */
const tableFolders = [...section.matchAll(/^\|\s*src\/([\w-]+)\s*\|/gm)].map((m) => m[1]!).sort();

/** The folders of the diagram: `src/<folder>` and the bare names between `|` in its fenced block. */
const diagram = section.match(/^```\n([\s\S]*?)^```/m)?.[1] ?? "";
const diagramFolders = [
  ...new Set(
    diagram
      .split(/<-|\|/)
      .map((part) => part.trim().replace(/^src\//, ""))
      .filter((name) => name !== "" && name !== "main.ts"),
  ),
].sort();

const srcFolders = readdirSync(join(ROOT, "src"), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();

describe(`${PAGE}'s layers`, () => {
  test("the section, its table and its diagram are found (a sanity check on the patterns)", () => {
    expect(section).not.toBe("");
    expect(tableFolders).toContain("core");
    expect(diagramFolders).toContain("core");
    expect(diagram).toContain("src/main.ts");
  });

  test("the table lists exactly the folders under src/", () => {
    expect(tableFolders).toEqual(srcFolders);
  });

  test("the diagram names exactly the folders under src/", () => {
    expect(diagramFolders).toEqual(srcFolders);
  });

  test("every src/ path the page names exists", () => {
    const named = [...new Set([...text.matchAll(/\bsrc\/[\w./-]*[\w/]/g)].map((m) => m[0]))];
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((path) => !existsSync(join(ROOT, path)))).toEqual([]);
  });
});
