/** The one helper for files the host names: text, or one E_CONFIG line naming the file and why. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RelayError } from "../../../src/lib/errors.ts";
import { readHostFile } from "../../../src/lib/files.ts";

describe("readHostFile", () => {
  test("reads the file as text; a missing one is E_CONFIG naming it and the system's reason", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-files-"));
    try {
      writeFileSync(join(dir, "tokens"), "é\n");
      expect(readHostFile(join(dir, "tokens"), "--token-file")).toBe("é\n");
      let error: unknown;
      try {
        readHostFile(join(dir, "missing"), "--token-file");
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(RelayError);
      expect((error as RelayError).code).toBe("E_CONFIG");
      expect((error as RelayError).message).toBe(`cannot read --token-file '${join(dir, "missing")}' (ENOENT)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
