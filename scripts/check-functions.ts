/**
 * `npm run lint` part two: no function in src/ is longer than 150 lines counting
 * the functions nested in it, nor 60 lines of its own (its length less the
 * nested functions'). Biome's noExcessiveLinesPerFunction counts only the
 * first, and TypeScript 7 has no JavaScript API to walk a syntax tree, so the
 * tree comes from @babel/parser.
 *
 *   bun scripts/check-functions.ts [--max-total 150] [--max-own 60] [DIR...]
 *
 * Prints one line per function over a bound and exits 1; `--report` prints the
 * longest ten either way.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { parse } from "@babel/parser";

interface Span {
  name: string;
  file: string;
  line: number;
  total: number;
  own: number;
}

type Node = { type: string; loc?: { start: { line: number }; end: { line: number } }; [key: string]: unknown };

const FUNCTIONS = new Set([
  "FunctionDeclaration",
  "FunctionExpression",
  "ArrowFunctionExpression",
  "ObjectMethod",
  "ClassMethod",
  "ClassPrivateMethod",
]);

function lines(node: Node): number {
  return node.loc!.end.line - node.loc!.start.line + 1;
}

/** What a reader would call the function: its declared name, the key it is stored under, or the variable. */
function nameOf(node: Node, parent: Node | null, parentKey: string): string {
  const id = node.id as Node | null | undefined;
  if (id && typeof id.name === "string") return id.name;
  const key = node.key as Node | undefined;
  if (key && typeof key.name === "string") return key.name;
  if (parent?.type === "VariableDeclarator") return String((parent.id as Node).name ?? "<anonymous>");
  if (parent?.type === "ObjectProperty") return String((parent.key as Node).name ?? "<anonymous>");
  return parentKey === "arguments" ? "<callback>" : "<anonymous>";
}

/** Every function of `root`, with the lines of the functions directly inside it subtracted for `own`. */
export function measure(source: string, file: string): Span[] {
  const ast = parse(source, { sourceType: "module", plugins: ["typescript"] }) as unknown as Node;
  const out: Span[] = [];
  // Returns the lines of the outermost functions found under `node` (for the enclosing function's `own`).
  function walk(node: Node, parent: Node | null, parentKey: string): number {
    let nested = 0;
    for (const [key, value] of Object.entries(node)) {
      if (key === "loc" || key === "start" || key === "end" || key === "extra") continue;
      const children = Array.isArray(value) ? value : [value];
      for (const child of children) {
        if (!child || typeof child !== "object" || typeof (child as Node).type !== "string") continue;
        const c = child as Node;
        if (FUNCTIONS.has(c.type)) {
          const inner = walk(c, node, key);
          const total = lines(c);
          out.push({ name: nameOf(c, node, key), file, line: c.loc!.start.line, total, own: total - inner });
          nested += total;
        } else nested += walk(c, node, key);
      }
    }
    void parent;
    void parentKey;
    return nested;
  }
  walk(ast, null, "");
  return out;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (path.endsWith(".ts") && !path.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    options: {
      "max-total": { type: "string", default: "150" },
      "max-own": { type: "string", default: "60" },
      report: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const maxTotal = Number(values["max-total"]);
  const maxOwn = Number(values["max-own"]);
  const root = join(import.meta.dir, "..");
  const spans: Span[] = [];
  for (const dir of positionals.length > 0 ? positionals : [join(root, "src")]) {
    for (const file of sources(dir)) spans.push(...measure(readFileSync(file, "utf8"), relative(root, file)));
  }
  const over = spans.filter((s) => s.total > maxTotal || s.own > maxOwn);
  for (const s of over) {
    console.log(`${s.file}:${s.line} ${s.name}: ${s.total} lines, ${s.own} of its own (max ${maxTotal}, ${maxOwn})`);
  }
  if (values.report) {
    console.log("longest, counting nested functions:");
    for (const s of [...spans].sort((a, b) => b.total - a.total).slice(0, 10))
      console.log(`  ${s.total}\t${s.file}:${s.line} ${s.name}`);
    console.log("longest of their own:");
    for (const s of [...spans].sort((a, b) => b.own - a.own).slice(0, 10))
      console.log(`  ${s.own}\t${s.file}:${s.line} ${s.name}`);
  }
  if (over.length > 0) {
    console.log(`${over.length} functions over the bounds (docs/development.md, "The layers")`);
    process.exit(1);
  }
  console.log(`${spans.length} functions, none over ${maxTotal} lines or ${maxOwn} of their own`);
}
