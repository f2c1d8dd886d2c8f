/**
 * The docs hold together: every relative link from README.md, docs/ and
 * bench/README.md points at a file that exists and, with a #fragment, at a
 * heading of that page (as GitHub makes its anchors); every guide in docs/ is
 * in README's index; README stays short.
 */
import { describe, expect, test } from "bun:test";
import { Glob } from "bun";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fencedBlocks } from "../support/docs.ts";
import { ROOT } from "../support/paths.ts";

const PAGES = ["README.md", "bench/README.md", ...new Glob("docs/**/*.md").scanSync(ROOT)].sort();

/** The page without fenced blocks and inline code, where a `[x](y)` is not a link. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, "").replace(/`[^`\n]*`/g, "");
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const base = m[1]!
      .toLowerCase()
      .replace(/<[^>]*>/g, "")
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Headings, with the inline code kept (anchors are made from its text too). */
function headingAnchors(text: string): Set<string> {
  const withoutFences = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, "");
  return anchors(withoutFences.replace(/`([^`\n]*)`/g, "$1"));
}

interface Link {
  page: string;
  target: string;
}

function links(page: string): Link[] {
  const text = prose(readFileSync(join(ROOT, page), "utf8"));
  return [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => ({ page, target: m[1]! }));
}

const all = PAGES.flatMap(links);

describe("links between pages", () => {
  test("the pages and their links are found (a sanity check on the patterns)", () => {
    expect(PAGES).toContain("docs/players.md");
    expect(all.length).toBeGreaterThan(50);
  });

  test("every relative link points at a file that exists, and every #fragment at a heading there", () => {
    const broken: string[] = [];
    for (const { page, target } of all) {
      if (/^[a-z]+:/.test(target)) continue;
      const [path, fragment] = target.split("#") as [string, string | undefined];
      const file = path === "" ? page : normalize(join(dirname(page), path));
      if (relative(ROOT, join(ROOT, file)).startsWith("..") || !existsSync(join(ROOT, file))) {
        broken.push(`${page}: ${target} (no such file)`);
        continue;
      }
      if (fragment === undefined) continue;
      if (!file.endsWith(".md")) broken.push(`${page}: ${target} (a fragment into a file that is not a page)`);
      else if (!headingAnchors(readFileSync(join(ROOT, file), "utf8")).has(fragment))
        broken.push(`${page}: ${target} (no heading with that anchor in ${file})`);
    }
    expect(broken).toEqual([]);
  });

  test("links to the project's own releases use the one account name the docs explain", () => {
    const outside = all.filter((l) => /github\.com\/[^/]+\/sova-relay/.test(l.target));
    expect(outside.filter((l) => !l.target.startsWith("https://github.com/sova-org/sova-relay/"))).toEqual([]);
  });
});

describe("README", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");

  test("is at most 200 lines", () => {
    expect(readme.split("\n").length - 1).toBeLessThanOrEqual(200);
  });

  test("its index lists every guide and every reference page in docs/", () => {
    const indexed = new Set(links("README.md").map((l) => l.target.split("#")[0]));
    const pages = [...new Glob("docs/**/*.md").scanSync(ROOT)].sort();
    expect(pages.filter((p) => !indexed.has(p))).toEqual([]);
  });
});

describe("blocks shown twice", () => {
  test("a block marked 'the same as recipe ID in FILE' is that recipe word for word", () => {
    const differ: string[] = [];
    let checked = 0;
    for (const page of PAGES) {
      for (const b of fencedBlocks(page)) {
        const same = /not a recipe: the same as recipe ([a-z0-9-]+) in (\S+),/.exec(b.above);
        if (!same) continue;
        checked++;
        const original = fencedBlocks(same[2]!).find((o) => o.above === `<!-- recipe: ${same[1]} -->`);
        if (original?.text !== b.text) differ.push(`${page}:${b.line} differs from recipe ${same[1]} in ${same[2]}`);
      }
    }
    expect(checked).toBeGreaterThan(0);
    expect(differ).toEqual([]);
  });
});
