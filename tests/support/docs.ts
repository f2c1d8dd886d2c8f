/** Fenced blocks of the docs, so a test runs what a page shows rather than a copy of it. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./paths.ts";

export interface Fenced {
  /** The info string: `sh`, `yaml`, `nginx`, or empty. */
  lang: string;
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The line just above the fence (`<!-- recipe: ID -->` or `<!-- not a recipe: WHY -->`). */
  above: string;
}

export function fencedBlocks(page: string): Fenced[] {
  const text = readFileSync(join(ROOT, page), "utf8");
  const out: Fenced[] = [];
  for (const m of text.matchAll(/^```([^\n`]*)\n([\s\S]*?)^```[ \t]*$/gm)) {
    const before = text.slice(0, m.index).split("\n");
    out.push({ lang: m[1]!.trim(), text: m[2]!, line: before.length, above: before.at(-2) ?? "" });
  }
  return out;
}

/** The first fenced block after the first line of `page` that contains `marker`. */
export function blockAfter(page: string, marker: string): Fenced {
  const text = readFileSync(join(ROOT, page), "utf8");
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${page} no longer says '${marker}'`);
  const line = text.slice(0, at).split("\n").length;
  const block = fencedBlocks(page).find((b) => b.line > line);
  if (!block) throw new Error(`${page} has no fenced block after '${marker}'`);
  return block;
}
