/**
 * scripts/check-functions.ts, the half of `npm run lint` that bounds function
 * length (150 lines counting nested functions, 60 of a function's own): it
 * measures what it should, fails on a fixture over the bounds, and src/ passes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measure } from "../../../scripts/check-functions.ts";
import { ROOT } from "../../support/paths.ts";

const SCRIPT = join(ROOT, "scripts", "check-functions.ts");

/** A function of `n` lines in all: its header, n - 2 statements, its closing brace. */
function lines(name: string, n: number, indent = ""): string {
  const body = Array.from({ length: n - 2 }, (_, i) => `${indent}  const v${i} = ${i};`);
  return [`${indent}function ${name}() {`, ...body, `${indent}}`].join("\n");
}

/** `name` holds functions of `inner` lines each and `own` lines of its own (its braces included). */
function nested(name: string, own: number, inner: number[]): string {
  const body = Array.from({ length: own - 2 }, (_, i) => `  const w${i} = ${i};`);
  return [`function ${name}() {`, ...body, ...inner.map((n, i) => lines(`${name}${i}`, n, "  ")), "}"].join("\n");
}

function run(...args: string[]): { code: number; out: string } {
  const r = Bun.spawnSync([process.execPath, SCRIPT, ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

const dir = mkdtempSync(join(tmpdir(), "check-functions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("measure", () => {
  test("counts a nested function in its parent's total and not in its own", () => {
    const spans = measure(nested("outer", 20, [30]), "x.ts");
    const outer = spans.find((s) => s.name === "outer")!;
    const inner = spans.find((s) => s.name === "outer0")!;
    expect(inner).toMatchObject({ line: 20, total: 30, own: 30 });
    expect(outer).toMatchObject({ line: 1, total: 50, own: 20 });
  });

  test("names arrows by their variable, methods by their key", () => {
    const source = "const f = () => 1;\nconst o = { m() { return 2; }, k: function () {} };\nclass C { run() {} }";
    expect(measure(source, "x.ts").map((s) => s.name)).toEqual(["f", "m", "k", "run"]);
  });
});

describe("the check", () => {
  test("fails with one line per function over a bound, naming its file, line and lengths", () => {
    const file = join(dir, "long.ts");
    // tooOwn: 61 of its own; tooTotal: 151 in all though only 40 of its own; the others are at the bounds.
    const functions = [lines("tooOwn", 61), nested("tooTotal", 40, [56, 55]), lines("fine", 60)];
    writeFileSync(file, [...functions, nested("fineTotal", 40, [55, 55])].join("\n"));
    const { code, out } = run(dir);
    expect(code).toBe(1);
    const reported = out.split("\n").filter((l) => l.includes("long.ts:"));
    expect(reported).toHaveLength(2);
    expect(reported[0]).toMatch(/long\.ts:1 tooOwn: 61 lines, 61 of its own \(max 150, 60\)$/);
    expect(reported[1]).toMatch(/long\.ts:62 tooTotal: 151 lines, 40 of its own \(max 150, 60\)$/);
    expect(out).toContain("2 functions over the bounds");
  });

  test("every function in src/ is within the bounds", () => {
    const { code, out } = run();
    expect(out).toMatch(/^\d+ functions, none over 150 lines or 60 of their own\n$/);
    expect(code).toBe(0);
  });
});
