/**
 * Comments cite the protocol as `docs/protocol.md, "Section"`: every such
 * citation names a section, and every section named is a heading of
 * docs/protocol.md, so renaming a section without its citations fails here.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../support/paths.ts";

const DOC = "docs/protocol.md";

function headings(): Set<string> {
  const text = readFileSync(join(ROOT, DOC), "utf8");
  return new Set([...text.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.trim()));
}

function sources(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const dir of ["src", "tests", "bench", "scripts"]) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true }) as string[]) {
      if (f.endsWith(".ts")) out.push([join(dir, f), readFileSync(join(ROOT, dir, f), "utf8")]);
    }
  }
  return out;
}

/** What each citation in `text` names: the quoted titles right after `docs/protocol.md,` (comment leaders removed). */
function citations(text: string): string[][] {
  const flat = text.replace(/\n\s*(\*|\/\/)\s*/g, " ");
  return [...flat.matchAll(/docs\/protocol\.md(?:,\s*((?:"[^"]+"(?:,\s*|\s+and\s+|\s+to\s+)?)+))?/g)].map((m) =>
    [...(m[1] ?? "").matchAll(/"([^"]+)"/g)].map((q) => q[1]!),
  );
}

describe("citations of the protocol", () => {
  test("the parser reads one section, several, and none", () => {
    expect(citations('x (docs/protocol.md, "Limits") y')).toEqual([["Limits"]]);
    expect(citations('(docs/protocol.md, "Connection flow"\n * and "Limits")')).toEqual([
      ["Connection flow", "Limits"],
    ]);
    expect(citations("see docs/protocol.md.")).toEqual([[]]);
  });

  test(`every comment citing ${DOC} names sections it has; none cites the old PROTOCOL.md`, () => {
    const known = headings();
    expect(known.has("Framing")).toBe(true);
    const problems: string[] = [];
    let cited = 0;
    for (const [file, text] of sources()) {
      if (file.endsWith("citations.test.ts")) continue;
      if (/\bPROTOCOL\.md/.test(text)) problems.push(`${file}: cites PROTOCOL.md`);
      for (const sections of citations(text)) {
        cited++;
        if (sections.length === 0) problems.push(`${file}: cites ${DOC} without a section`);
        for (const s of sections) if (!known.has(s)) problems.push(`${file}: no section "${s}" in ${DOC}`);
      }
    }
    expect(problems).toEqual([]);
    expect(cited).toBeGreaterThan(10);
  });
});
