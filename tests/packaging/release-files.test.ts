/**
 * The release's own files: the workflows pass the schema check (and a broken
 * copy does not), ask for no more than they need and pin their actions; the
 * systemd unit passes `systemd-analyze verify` with its hardening options (and a
 * unit with a typo in one does not). The checks are the scripts .ci/run runs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../support/paths.ts";

const WORKFLOWS = join(ROOT, ".github", "workflows");
const UNIT = join(ROOT, "packaging", "sova-relay.service");
const work = mkdtempSync(join(tmpdir(), "sova-release-files-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function check(script: string, file?: string) {
  const proc = Bun.spawnSync(["bash", join(ROOT, "scripts", script), ...(file ? [file] : [])], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode, out: proc.stdout.toString() + proc.stderr.toString() };
}

/** A copy of `source` with `from` replaced by `to` (which must be there). */
function brokenCopy(source: string, from: string, to: string, name: string): string {
  const text = readFileSync(source, "utf8");
  expect(text).toContain(from);
  const path = join(work, name);
  writeFileSync(path, text.replace(from, to));
  return path;
}

interface Job {
  permissions?: Record<string, string>;
  uses?: string;
  needs?: string | string[];
  steps?: Array<{ uses?: string; run?: string; with?: Record<string, unknown> }>;
}
const workflow = (name: string) =>
  Bun.YAML.parse(readFileSync(join(WORKFLOWS, name), "utf8")) as {
    on: Record<string, unknown>;
    permissions: Record<string, string>;
    jobs: Record<string, Job>;
  };

describe("workflows", () => {
  test("ci.yml and release.yml pass the workflow schema check", () => {
    const r = check("check-workflows.sh");
    expect(r.out).toContain("valid: ");
    expect(r.code).toBe(0);
  });

  test("a broken workflow fails the check: a misspelt key, a bad permission, a job that needs a missing job", () => {
    const release = join(WORKFLOWS, "release.yml");
    for (const [from, to] of [
      ["    runs-on: ubuntu-24.04\n    timeout-minutes: 30", "    runs_on: ubuntu-24.04\n    timeout-minutes: 30"],
      ["contents: write", "contents: writable"],
      ["needs: build", "needs: bulid"],
    ] as const) {
      const r = check("check-workflows.sh", brokenCopy(release, from, to, "broken.yml"));
      expect(`${r.code} ${from} -> ${to}`).toBe(`1 ${from} -> ${to}`);
      expect(r.out).toContain("INVALID: ");
    }
  });

  test(`least permissions: read by default, contents: write only to publish the release, packages: \
write only to push the image`, () => {
    const ci = workflow("ci.yml");
    expect(Object.keys(ci.on).sort()).toEqual(["pull_request", "push", "workflow_call"]);
    expect(ci.permissions).toEqual({ contents: "read" });
    const rel = workflow("release.yml");
    expect(rel.on).toEqual({ push: { tags: ["v*"] } });
    expect(rel.permissions).toEqual({ contents: "read" });
    const writes = Object.entries(rel.jobs).flatMap(([job, j]) =>
      Object.entries(j.permissions ?? {})
        .filter(([, v]) => v === "write")
        .map(([scope]) => `${job}:${scope}`),
    );
    expect(writes.sort()).toEqual(["image:packages", "release:contents"]);
    // Nothing is published before the tests pass.
    expect(rel.jobs.test!.uses).toBe("./.github/workflows/ci.yml");
    expect(rel.jobs.build!.needs).toBe("test");
  });

  test(`every action is pinned to a full version; \
the image is multi-arch from Dockerfile.prebuilt with version and latest tags`, () => {
    const uses = [...Object.values(workflow("ci.yml").jobs), ...Object.values(workflow("release.yml").jobs)].flatMap(
      (j) => (j.steps ?? []).map((s) => s.uses).filter((u): u is string => !!u),
    );
    expect(uses.length).toBeGreaterThan(5);
    for (const u of uses) expect(u).toMatch(/^[\w.-]+\/[\w.-]+@v\d+\.\d+\.\d+$/);
    const steps = workflow("release.yml").jobs.image!.steps!;
    const push = steps.find((s) => s.uses?.startsWith("docker/build-push-action@"))!;
    expect(push.with).toMatchObject({ file: "Dockerfile.prebuilt", platforms: "linux/amd64,linux/arm64", push: true });
    expect(steps.some((s) => s.uses?.startsWith("docker/setup-buildx-action@"))).toBe(true);
    const tags = steps.find((s) => s.run?.includes("ghcr.io/"))!.run!;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, as the workflow writes it
    expect(tags).toContain('tags="$image:${GITHUB_REF_NAME#v}"');
    expect(tags).toContain("$image:latest");
    const publish = workflow("release.yml").jobs.release!.steps!.find((s) => s.run?.includes("gh release create"))!
      .run!;
    expect(publish).toContain("dist/sova-relay-* dist/SHA256SUMS install.sh packaging/sova-relay.service");
  });

  test("the image build context holds the release binaries Dockerfile.prebuilt picks", () => {
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8");
    const dockerfile = readFileSync(join(ROOT, "Dockerfile.prebuilt"), "utf8");
    for (const name of ["sova-relay-linux-x64", "sova-relay-linux-arm64"]) {
      expect(dockerfile).toContain(`f=${name}`);
      expect(ignore).toContain(`!dist/${name}\n`);
    }
  });
});

const hasSystemd = Bun.which("systemd-analyze") !== null;
if (!hasSystemd)
  console.warn(
    "SKIP: systemd unit checks because systemd-analyze is not installed (.ci/run installs Debian's systemd)",
  );

test("docs/systemd.md shows the unit as it ships", () => {
  const unit = readFileSync(UNIT, "utf8");
  const guide = readFileSync(join(ROOT, "docs", "systemd.md"), "utf8");
  expect(guide).toContain(`\`\`\`ini\n${unit.slice(unit.indexOf("[Unit]"))}\`\`\``);
});

describe.skipIf(!hasSystemd)("systemd unit", () => {
  test("packaging/sova-relay.service passes systemd-analyze verify with its hardening options", () => {
    const r = check("check-systemd-unit.sh");
    expect(r.out).toContain("valid: ");
    expect(r.code).toBe(0);
  });

  test(`a broken unit fails: \
a misspelt hardening option, bad values (verify only warns about both), no ExecStart`, () => {
    for (const [from, to] of [
      ["ProtectSystem=strict", "ProtectSytem=strict"],
      ["MemoryMax=256M", "MemoryMax=lots"],
      ["Restart=on-failure", "Restart=sometimes"],
      ["[Service]", "[Servic]"],
    ] as const) {
      const r = check("check-systemd-unit.sh", brokenCopy(UNIT, from, to, "sova-relay.service"));
      expect(`${r.code} ${from} -> ${to}`).toBe(`1 ${from} -> ${to}`);
      expect(r.out).toContain("INVALID: ");
    }
  });
});
