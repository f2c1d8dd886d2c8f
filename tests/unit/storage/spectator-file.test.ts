/** The spectator file: digests only, owner-only, whole-file writes, and one clear line for a bad entry. */
import { describe, expect, test } from "bun:test";
import { chownSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSpectatorFile, spectatorPath, writeSpectatorFile } from "../../../src/storage/spectator-file.ts";

const DIGEST = "a".repeat(64);

describe("the spectator file", () => {
  test("written whole with mode 0600 and read back; a missing default file is no entries", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-spec-"));
    const path = spectatorPath(dir);
    expect(readSpectatorFile(path, true)).toEqual([]);
    const entries = [
      { session: "open", digest: DIGEST },
      { session: "0123456789ab", digest: "b".repeat(64) },
    ];
    writeSpectatorFile(path, entries);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readSpectatorFile(path)).toEqual(entries);
    expect(readFileSync(path, "utf8")).not.toMatch(/key:/);
  });

  test("a named file that does not exist, and malformed lines, stop with one line naming the line", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-spec-"));
    expect(() => readSpectatorFile(join(dir, "none"))).toThrow(
      `cannot read the spectator file '${join(dir, "none")}' (ENOENT)`,
    );
    const path = join(dir, "spectators");
    for (const bad of [`open ${DIGEST} extra`, "open", `OPEN ${DIGEST}`, `open ${"g".repeat(64)}`, `0123 ${DIGEST}`]) {
      writeFileSync(path, `# comment\n\n${bad}\n`);
      expect(() => readSpectatorFile(path)).toThrow(`the spectator file '${path}', line 3:`);
    }
  });

  if (process.getuid?.() === 0)
    test("written by root into a directory another user owns (systemd's DynamicUser), the file is that user's", () => {
      const dir = mkdtempSync(join(tmpdir(), "sova-spec-"));
      chownSync(dir, 65534, 65534);
      writeSpectatorFile(spectatorPath(dir), [{ session: "open", digest: DIGEST }]);
      expect(statSync(spectatorPath(dir)).uid).toBe(65534);
    });
});
