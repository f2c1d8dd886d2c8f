/**
 * Compiles the relay into single binaries with `bun build --compile`.
 *   bun scripts/build.ts              dist/sova-relay for this machine
 *   bun scripts/build.ts --release    every release target, plus dist/SHA256SUMS
 *   --plain                           without --minify and --bytecode
 * Bytecode halves start-up to listening (48 ms -> 20 ms here); minify changes
 * nothing measurable but size. docs/performance.md, "The binary", has the figures.
 * Version, commit and target are baked in (src/lib/version.ts reads them).
 * Compiled binaries would read .env and bunfig.toml from the directory they start
 * in; that is turned off so a container behaves the same wherever it starts.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import pkg from "../package.json" with { type: "json" };

const ROOT = join(import.meta.dir, "..");
const DIST = join(ROOT, "dist");

export const RELEASE_TARGETS = [
  { target: "bun-linux-x64", name: "sova-relay-linux-x64" },
  { target: "bun-linux-x64-baseline", name: "sova-relay-linux-x64-baseline" },
  { target: "bun-linux-arm64", name: "sova-relay-linux-arm64" },
  { target: "bun-linux-x64-musl", name: "sova-relay-linux-x64-musl" },
  { target: "bun-darwin-arm64", name: "sova-relay-darwin-arm64" },
  { target: "bun-darwin-x64", name: "sova-relay-darwin-x64" },
  { target: "bun-windows-x64", name: "sova-relay-windows-x64.exe" },
] as const;

const args = new Set(process.argv.slice(2));
const minify = !args.has("--plain");
const bytecode = !args.has("--plain");

/** The commit baked into the binary (src/lib/version.ts); "unknown" outside a git checkout. */
function gitCommit(): string {
  try {
    const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stdout: "pipe", stderr: "ignore" });
    return git.exitCode === 0 ? git.stdout.toString().trim() || "unknown" : "unknown";
  } catch {
    return "unknown";
  }
}

let commit: string | undefined;

async function compile(outfile: string, target?: string): Promise<void> {
  const result = await Bun.build({
    entrypoints: [join(ROOT, "src/main.ts")],
    minify,
    bytecode,
    define: {
      __SOVA_RELAY_VERSION__: JSON.stringify(pkg.version),
      __SOVA_RELAY_COMMIT__: JSON.stringify((commit ??= gitCommit())),
      __SOVA_RELAY_TARGET__: JSON.stringify(target ?? `bun-${process.platform}-${process.arch}`),
    },
    compile: {
      outfile,
      ...(target ? { target: target as Bun.Build.CompileTarget } : {}),
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
  });
  if (!result.success) {
    for (const log of result.logs) console.error(String(log));
    throw new Error(`build failed for ${target ?? "this machine"}`);
  }
  console.log(`built ${outfile}${target ? ` (${target})` : ""}`);
}

async function main(): Promise<void> {
  mkdirSync(DIST, { recursive: true });
  if (!args.has("--release")) return compile(join(DIST, "sova-relay"));
  const sums: string[] = [];
  for (const t of RELEASE_TARGETS) {
    const out = join(DIST, t.name);
    await compile(out, t.target);
    sums.push(`${createHash("sha256").update(readFileSync(out)).digest("hex")}  ${basename(out)}`);
  }
  writeFileSync(join(DIST, "SHA256SUMS"), `${sums.join("\n")}\n`);
  console.log(`wrote ${join(DIST, "SHA256SUMS")}`);
}

// Only when run: the tests import RELEASE_TARGETS.
if (import.meta.main) await main();
