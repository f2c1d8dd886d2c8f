/**
 * The docs' fenced blocks, read by the tests that run them (tests/packaging/recipes.test.ts
 * has the rules and the registry). Before every fenced block in README.md, docs/ and
 * bench/README.md sits one marker line:
 *   <!-- recipe: ID -->          a command or configuration a reader copies; a test runs it
 *   <!-- not a recipe: WHY -->   what a program prints, a map of files: nothing to run
 * A test takes a recipe's text from the doc with `recipe("ID")`, never from a copy, so the
 * doc and the test cannot drift, and changes only what it declares (`.with`): a free port
 * for 9090, a local mirror for github.com. A substitution that no longer matches fails.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "./paths.ts";

export interface Block {
  /** Relative to the project root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  text: string;
  marker: { kind: "recipe"; id: string } | { kind: "none"; why: string } | null;
  /** The lines around the block (the paragraph before its marker and the one after it), for "not tested". */
  context: string;
}

const MARKER_RECIPE = /^\s*<!--\s*recipe:\s*([a-z0-9][a-z0-9-]*)\s*-->\s*$/;
const MARKER_NONE = /^\s*<!--\s*not a recipe:\s*(.+?)\s*-->\s*$/;
const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/;

/** Every Markdown file the docs are made of. */
export function docFiles(): string[] {
  const files = [join(ROOT, "README.md"), join(ROOT, "bench", "README.md")];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".md")) files.push(path);
    }
  };
  try {
    walk(join(ROOT, "docs"));
  } catch {
    // no docs/ yet
  }
  return files.map((f) => relative(ROOT, f));
}

/** The nearest paragraph from `from` on, going up (-1) or down (1), past blank lines. */
function paragraph(lines: string[], from: number, step: 1 | -1): string {
  const out: string[] = [];
  let i = from;
  while (i >= 0 && i < lines.length && lines[i]!.trim() === "") i += step;
  for (; i >= 0 && i < lines.length && lines[i]!.trim() !== ""; i += step) out.push(lines[i]!);
  return (step === -1 ? out.reverse() : out).join("\n");
}

export function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    let end = i + 1;
    while (end < lines.length && !lines[end]!.trimStart().startsWith(fence!)) end++;
    const body = lines.slice(i + 1, end).map((l) => (l.startsWith(indent!) ? l.slice(indent!.length) : l));
    const above = i > 0 ? lines[i - 1]! : "";
    const recipeMark = MARKER_RECIPE.exec(above);
    const noneMark = MARKER_NONE.exec(above);
    blocks.push({
      file,
      line: i + 1,
      lang: lang ?? "",
      text: `${body.join("\n")}\n`,
      marker: recipeMark
        ? { kind: "recipe", id: recipeMark[1]! }
        : noneMark
          ? { kind: "none", why: noneMark[1]! }
          : null,
      context: `${paragraph(lines, i - 2, -1)}\n${paragraph(lines, end + 1, 1)}`,
    });
    i = end;
  }
  return blocks;
}

export function allBlocks(): Block[] {
  return docFiles().flatMap(blocksOf);
}

/** [what the doc says, what the test runs instead]; `from` must be in the text. */
export type Substitution = readonly [from: string | RegExp, to: string];

export interface Recipe {
  readonly id: string;
  readonly where: string;
  readonly text: string;
  /** The text with each substitution made (every match of each); throws when one no longer matches. */
  with(substitutions: readonly Substitution[]): string;
}

/** `text` with each substitution made; throws, naming `what`, when one no longer matches. */
export function substitute(text: string, substitutions: readonly Substitution[], what: string): string {
  for (const [from, to] of substitutions) {
    const pattern = typeof from === "string" ? from : new RegExp(from.source, `${from.flags.replace("g", "")}g`);
    const matches = typeof pattern === "string" ? text.split(pattern).length - 1 : (text.match(pattern) ?? []).length;
    if (matches === 0)
      throw new Error(`${what} no longer contains ${String(from)}: it changed, update the test's substitutions`);
    text = typeof pattern === "string" ? text.replaceAll(pattern, () => to) : text.replace(pattern, () => to);
  }
  return text;
}

/** A file of the project (a compose file, the unit) as a test runs it: with its declared substitutions. */
export function fileWith(path: string, substitutions: readonly Substitution[]): string {
  return substitute(readFileSync(join(ROOT, path), "utf8"), substitutions, path);
}

export function recipe(id: string): Recipe {
  const found = allBlocks().filter((b) => b.marker?.kind === "recipe" && b.marker.id === id);
  if (found.length !== 1) throw new Error(`recipe '${id}': ${found.length} blocks carry <!-- recipe: ${id} -->`);
  const block = found[0]!;
  const where = `${block.file}:${block.line}`;
  return {
    id,
    where,
    text: block.text,
    with(substitutions) {
      return substitute(block.text, substitutions, `recipe '${id}' (${where})`);
    },
  };
}

/** A `$ command` block: the commands, and what each prints (the lines up to the next `$`). */
export function session(text: string): Array<{ command: string; output: string }> {
  const steps: Array<{ command: string; output: string }> = [];
  for (const line of text.trimEnd().split("\n")) {
    if (line.startsWith("$ ")) steps.push({ command: line.slice(2), output: "" });
    else if (steps.length > 0) steps.at(-1)!.output += `${line}\n`;
  }
  return steps;
}
