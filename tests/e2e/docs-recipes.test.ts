/**
 * Commands of the guides run as written, through `sh`, with `sova-relay` on PATH
 * (the sources behind a one-line wrapper) and only the host's paths and values
 * put in: docs/operations.md's `history clear` lines against a state directory a
 * relay filled.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import { sessionHash } from "../../src/core/access.ts";
import { loadSessionSecret } from "../../src/storage/session-key.ts";
import { blockAfter } from "../support/docs.ts";
import { ROOT } from "../support/paths.ts";
import { startProcess } from "../support/relay.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const work = mkdtempSync(join(tmpdir(), "sova-docs-recipes-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A directory whose `sova-relay` runs the sources, as an installed binary would run. */
function binDir(): string {
  const dir = join(work, "bin");
  const wrapper = join(dir, "sova-relay");
  Bun.spawnSync(["mkdir", "-p", dir]);
  writeFileSync(wrapper, `#!/bin/sh\nexec ${SOURCE.map((p) => `'${p}'`).join(" ")} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return dir;
}

function sh(line: string): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["sh", "-c", line], {
    env: { ...process.env, PATH: `${binDir()}:${process.env.PATH}` },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

const TOKENS = ["docs-history-token-Q7xv", "docs-history-token-R4yw"];

/** A state directory with 5 stored updates in each of two sessions; the first session's id. */
async function filled(): Promise<{ dir: string; first: string }> {
  const dir = mkdtempSync(join(work, "state-"));
  const relay = await startProcess(SOURCE)([
    "--history",
    "50",
    "--state-dir",
    dir,
    "--token",
    TOKENS[0]!,
    "--token",
    TOKENS[1]!,
  ]);
  try {
    for (const token of TOKENS) {
      const a = await connect({ port: relay.port });
      await a.register({ name: "a", token });
      for (let i = 0; i < 5; i++) a.sendUpdate(Uint8Array.of(i), BigInt(i));
      await a.ping(1n);
      a.close();
    }
  } finally {
    await relay.stop();
  }
  return { dir, first: sessionHash(TOKENS[0]!, loadSessionSecret(dir)) };
}

describe("docs/operations.md: history clear", () => {
  const lines = blockAfter("docs/operations.md", "Clearing is a command, not a network API")
    .text.trim()
    .split("\n")
    .map((l) => l.replace(/\s+#.*$/, ""));

  test("the page shows both forms: every session, and one by its hash", () => {
    expect(lines).toEqual([
      "sova-relay history clear --state-dir /var/lib/sova-relay",
      "sova-relay history clear --state-dir /var/lib/sova-relay --session 0a1b2c3d4e5f",
    ]);
  });

  test("every session: all stored updates go", async () => {
    const { dir } = await filled();
    const r = sh(lines[0]!.replace("/var/lib/sova-relay", dir));
    expect(r).toEqual({ code: 0, out: `removed 10 stored updates from ${dir}\n`, err: "" });
  });

  test("one session by the hash /status shows: only its updates go", async () => {
    const { dir, first } = await filled();
    const r = sh(lines[1]!.replace("/var/lib/sova-relay", dir).replace("0a1b2c3d4e5f", first));
    expect(r).toEqual({ code: 0, out: `removed 5 stored updates of session ${first} from ${dir}\n`, err: "" });
    expect(sh(lines[0]!.replace("/var/lib/sova-relay", dir)).out).toBe(`removed 5 stored updates from ${dir}\n`);
  });
});
