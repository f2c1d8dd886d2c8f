/**
 * The relay's option table (src/host/config.ts): what instances must report is
 * Sova's protocol version, whatever the relay's own version says.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveConfig, VERSION } from "../../../src/host/config.ts";
import { SOVA_PROTOCOL_VERSION } from "../../../src/protocol/version.ts";
import { ROOT } from "../../support/paths.ts";

const copies: string[] = [];
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

describe("--expected-version", () => {
  test("defaults to Sova's protocol version, 0.1.0, not the relay's", () => {
    expect(SOVA_PROTOCOL_VERSION).toBe("0.1.0");
    expect(resolveConfig([], {}).expectedVersion).toBe(SOVA_PROTOCOL_VERSION);
    expect(resolveConfig(["--expected-version", "0.2.0"], {}).expectedVersion).toBe("0.2.0");
  });

  test("a relay released as another version still expects 0.1.0 (the source with package.json at 9.9.9)", () => {
    // Under the project, so the copy finds node_modules as the source does.
    mkdirSync(join(ROOT, ".tmp"), { recursive: true });
    const dir = mkdtempSync(join(ROOT, ".tmp", "version-"));
    copies.push(dir);
    cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ ...pkg, version: "9.9.9" }));
    const script =
      'import { resolveConfig, VERSION } from "./src/host/config.ts";' +
      "console.log(JSON.stringify({ relay: VERSION, expected: resolveConfig([], {}).expectedVersion }));";
    const r = Bun.spawnSync([process.execPath, "-e", script], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(JSON.parse(r.stdout.toString())).toEqual({ relay: "9.9.9", expected: "0.1.0" });
    expect(VERSION).toBe(pkg.version);
  });
});
