/**
 * Which build is running: `--version`, `/status` and the status page agree on
 * version, commit and build target, from source (git asked at run time) and
 * from the compiled binary (baked in by scripts/build.ts).
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../../package.json" with { type: "json" };
import { startProcess } from "../../support/relay.ts";
import { ROOT } from "../../support/paths.ts";

const BINARY = process.env.SOVA_TEST_BINARY ?? join(ROOT, "dist", "sova-relay");
const LINE = /^sova-relay (\S+) \(commit ([0-9a-f]{4,40}|unknown), target (\S+)\)$/;

function gitHead(): string {
  try {
    const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT });
    return git.exitCode === 0 ? git.stdout.toString().trim() : "unknown";
  } catch {
    return "unknown";
  }
}

/** Runs `command --version`, then the relay itself, and reads /status and / from it. */
async function check(command: string[]) {
  const out = Bun.spawnSync([...command, "--version"])
    .stdout.toString()
    .trim();
  const m = LINE.exec(out);
  expect(m, `--version printed "${out}"`).not.toBeNull();
  const [, version, commit, target] = m!;
  // --http-port 0 would mean no status page at all.
  const relay = await startProcess(command)(["--http-port", "any"]);
  try {
    const http = await relay.waitForEvent("http_listening");
    const base = `http://127.0.0.1:${http.port}/`;
    const status = (await (await fetch(`${base}status`)).json()) as { version: string; commit: string; target: string };
    expect({ version: status.version, commit: status.commit, target: status.target }).toEqual({
      version: version!,
      commit: commit!,
      target: target!,
    });
    const page = await (await fetch(base)).text();
    expect(page).toContain(`version ${version} · commit ${commit} · ${target}`);
  } finally {
    await relay.stop();
  }
  return { version, commit, target };
}

describe("version", () => {
  test(`from source: \
package.json's version, git's commit, target 'source', the same in --version, /status and the page`, async () => {
    const info = await check([process.execPath, join(ROOT, "src/main.ts")]);
    expect(info).toEqual({ version: pkg.version, commit: gitHead(), target: "source" });
  });

  if (existsSync(BINARY)) {
    test("the compiled binary: commit and target baked in, the same in --version, /status and the page", async () => {
      const info = await check([BINARY]);
      expect(info.version).toBe(pkg.version);
      expect(info.commit).toMatch(/^[0-9a-f]{4,40}$/);
      expect(info.target).toStartWith("bun-");
    });
  } else {
    console.warn(`SKIP: the compiled binary's version test because ${BINARY} is not built (npm run build)`);
    test.skip("the compiled binary's --version and /status (not built)", () => {});
  }
});
