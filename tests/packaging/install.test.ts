/**
 * install.sh against a release served over HTTP from 127.0.0.1 (GitHub's layout:
 * /latest/download/FILE and /download/vV/FILE), run with `sh` into a temporary
 * prefix. The latest release holds the compiled binary when it is built
 * (SOVA_TEST_BINARY, or dist/sova-relay) as this machine's asset; every other
 * asset is a small script that names itself, so the suite never needs the
 * 110 MB build and can tell which asset the script chose.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { RELEASE_TARGETS } from "../../scripts/build.ts";
import pkg from "../../package.json" with { type: "json" };
import { ROOT } from "../support/paths.ts";

const INSTALL = join(ROOT, "install.sh");
const BINARY = process.env.SOVA_TEST_BINARY ?? join(ROOT, "dist", "sova-relay");
const REAL = existsSync(BINARY) && process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");
const NATIVE = `sova-relay-linux-${process.arch === "arm64" ? "arm64" : "x64"}`;
/** What makes install.sh pick NATIVE on this machine, whatever its libc or CPU. */
const NATIVE_ENV = {
  SOVA_RELAY_OS: "linux",
  SOVA_RELAY_ARCH: process.arch === "arm64" ? "arm64" : "x64",
  SOVA_RELAY_LIBC: "gnu",
  SOVA_RELAY_AVX2: "1",
};

let work: string;
let server: Server<undefined>;
const requests: string[] = [];

function standIn(version: string, asset: string): string {
  return `#!/bin/sh\necho "sova-relay ${version} (commit standin, target ${asset})"\n`;
}

/** A release directory as build:release leaves dist/: every asset plus SHA256SUMS. */
function makeRelease(dir: string, version: string, withBinary: boolean): void {
  mkdirSync(dir, { recursive: true });
  const sums: string[] = [];
  for (const { name } of RELEASE_TARGETS) {
    const path = join(dir, name);
    if (withBinary && name === NATIVE) copyFileSync(BINARY, path);
    else writeFileSync(path, standIn(version, name));
    chmodSync(path, 0o755);
    sums.push(`${createHash("sha256").update(readFileSync(path)).digest("hex")}  ${name}`);
  }
  writeFileSync(join(dir, "SHA256SUMS"), `${sums.join("\n")}\n`);
}

async function install(args: string[], env: Record<string, string> = {}) {
  const prefix = mkdtempSync(join(work, "prefix-"));
  const proc = Bun.spawn(["sh", INSTALL, "--base-url", server.url.href, "--prefix", prefix, ...args], {
    // Not the caller's SOVA_RELAY_* variables: only what each test sets.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, TMPDIR: work, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr, prefix, installed: join(prefix, "sova-relay") };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "sova-install-"));
  makeRelease(join(work, "releases", `v${pkg.version}`), pkg.version, REAL);
  makeRelease(join(work, "releases", "v0.0.9"), "0.0.9", false);
  // The same release with one asset changed after its checksums were taken.
  makeRelease(join(work, "releases", "v6.6.6"), "6.6.6", false);
  writeFileSync(join(work, "releases", "v6.6.6", NATIVE), standIn("6.6.6", "tampered"));
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      requests.push(path);
      const m = /^\/(?:latest\/download|download\/(v[0-9.]+))\/([A-Za-z0-9._-]+)$/.exec(path);
      const file = m ? join(work, "releases", m[1] ?? `v${pkg.version}`, m[2]!) : "";
      return m && existsSync(file) ? new Response(Bun.file(file)) : new Response("not found", { status: 404 });
    },
  });
  if (!REAL)
    console.warn(
      `NOTE: install.sh's good install uses a stand-in script, not the compiled binary,` +
        ` because ${BINARY} is not built (npm run build)`,
    );
});

afterAll(() => {
  server.stop(true);
  rmSync(work, { recursive: true, force: true });
});

describe("install.sh", () => {
  test(`a good install: \
downloads this machine's build, checks it, installs it and prints the version it installed`, async () => {
    const r = await install([], NATIVE_ENV);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const source = join(work, "releases", `v${pkg.version}`, NATIVE);
    expect(readFileSync(r.installed).equals(readFileSync(source))).toBe(true);
    const own = Bun.spawnSync([r.installed, "--version"]).stdout.toString().trim();
    expect(own).toStartWith(`sova-relay ${pkg.version} (commit `);
    if (REAL) expect(own).toContain("target bun-linux-");
    expect(r.stdout.split("\n")[0]).toBe(`installed ${own} to ${r.installed}`);
    expect(requests.slice(-2)).toEqual(["/latest/download/SHA256SUMS", `/latest/download/${NATIVE}`]);
  });

  test("--version picks that release (with or without the v)", async () => {
    for (const v of ["0.0.9", "v0.0.9"]) {
      const r = await install(["--version", v], NATIVE_ENV);
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith(`installed sova-relay 0.0.9 (commit standin, target ${NATIVE}) to `);
    }
  });

  test("the OS, CPU and libc pick the asset: no AVX2 gets baseline, musl gets musl", async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [
        { SOVA_RELAY_OS: "Linux", SOVA_RELAY_ARCH: "x86_64", SOVA_RELAY_LIBC: "gnu", SOVA_RELAY_AVX2: "1" },
        "sova-relay-linux-x64",
      ],
      [
        { SOVA_RELAY_OS: "Linux", SOVA_RELAY_ARCH: "x86_64", SOVA_RELAY_LIBC: "gnu", SOVA_RELAY_AVX2: "0" },
        "sova-relay-linux-x64-baseline",
      ],
      [
        { SOVA_RELAY_OS: "Linux", SOVA_RELAY_ARCH: "amd64", SOVA_RELAY_LIBC: "musl", SOVA_RELAY_AVX2: "1" },
        "sova-relay-linux-x64-musl",
      ],
      [{ SOVA_RELAY_OS: "Linux", SOVA_RELAY_ARCH: "aarch64", SOVA_RELAY_LIBC: "gnu" }, "sova-relay-linux-arm64"],
      [{ SOVA_RELAY_OS: "Darwin", SOVA_RELAY_ARCH: "arm64" }, "sova-relay-darwin-arm64"],
      [{ SOVA_RELAY_OS: "Darwin", SOVA_RELAY_ARCH: "x86_64" }, "sova-relay-darwin-x64"],
    ];
    for (const [env, asset] of cases) {
      const r = await install(["--version", "0.0.9"], env);
      expect(`${r.code} ${r.stdout.split("\n")[0]}`).toBe(
        `0 installed sova-relay 0.0.9 (commit standin, target ${asset}) to ${r.installed}`,
      );
    }
  });

  test("a corrupted binary is refused: one line, non-zero exit, the installed binary untouched", async () => {
    const prefix = mkdtempSync(join(work, "prefix-"));
    writeFileSync(join(prefix, "sova-relay"), "the old binary");
    const r = await install(["--version", "6.6.6", "--prefix", prefix], NATIVE_ENV);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^sova-relay install: checksum mismatch for ${NATIVE}` +
          ` \\(expected [0-9a-f]{64}, got [0-9a-f]{64}\\); nothing installed\\n$`,
      ),
    );
    expect(readFileSync(join(prefix, "sova-relay"), "utf8")).toBe("the old binary");
    expect(r.stdout).not.toContain("installed");
  });

  test("an unknown platform is refused with one clear line before anything is downloaded", async () => {
    const before = requests.length;
    for (const [env, platform] of [
      [{ SOVA_RELAY_OS: "plan9", SOVA_RELAY_ARCH: "x86_64" }, "plan9/x64"],
      [{ SOVA_RELAY_OS: "Linux", SOVA_RELAY_ARCH: "riscv64", SOVA_RELAY_LIBC: "gnu" }, "linux/riscv64"],
    ] as const) {
      const r = await install([], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `sova-relay install: no sova-relay build for ${platform}` +
          ` (there are builds for linux x64 and arm64, darwin x64 and arm64)\n`,
      );
      expect(existsSync(r.installed)).toBe(false);
    }
    expect(requests.length).toBe(before);
  });

  test("a missing release and an unknown option each get one line and a non-zero exit", async () => {
    const missing = await install(["--version", "9.9.9"], NATIVE_ENV);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `sova-relay install: cannot download ${server.url.href}download/v9.9.9/SHA256SUMS` +
        ` (is there a release 'v9.9.9'?)\n`,
    );
    const bad = await install(["--frobnicate"], NATIVE_ENV);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trimEnd().split("\n")).toEqual([
      "sova-relay install: unknown option '--frobnicate' (options: --version V, --prefix DIR, --base-url URL)",
    ]);
  });
});
