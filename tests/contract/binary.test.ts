/**
 * The same protocol contract against the compiled binary (`npm run build`;
 * .ci/run builds it and sets SOVA_TEST_BINARY). Without a binary the suite is
 * skipped, and says so.
 */
import { describe, test } from "bun:test";
import { existsSync } from "node:fs";
import { protocolSuite } from "./protocol.case.ts";
import { startProcess } from "../support/relay.ts";
import { BINARY } from "../support/paths.ts";

const binary = BINARY;

if (existsSync(binary)) {
  protocolSuite("binary", startProcess([binary]));
} else {
  console.warn(`SKIPPED: protocol suite against the compiled binary: ${binary} not found (run npm run build)`);
  describe("binary", () => {
    test.skip(`protocol suite against ${binary} (not built)`, () => {});
  });
}
