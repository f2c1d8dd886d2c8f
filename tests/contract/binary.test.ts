/**
 * The protocol contract against the compiled binary (`npm run build`; .ci/run
 * builds it and sets SOVA_TEST_BINARY), over TCP, TLS and a WebSocket. Without
 * a binary the runs are skipped, and say so.
 */
import { describe, test } from "bun:test";
import { existsSync } from "node:fs";
import { protocolSuite } from "./protocol.case.ts";
import { startProcess } from "../support/relay.ts";
import { BINARY } from "../support/paths.ts";
import { overTcp, overTls, overWebSocket } from "../support/runners.ts";

if (existsSync(BINARY)) {
  const binary = startProcess([BINARY]);
  protocolSuite(overTcp("binary over tcp", binary));
  protocolSuite(overTls("binary over tls", binary));
  protocolSuite(overWebSocket("binary over websocket", binary));
} else {
  console.warn(
    `SKIP: the contract suite against the compiled binary (tcp, tls, websocket): ${BINARY} not built (npm run build)`,
  );
  describe("binary", () => {
    test.skip(`protocol suite over tcp, tls and websocket against ${BINARY} (not built: npm run build)`, () => {});
  });
}
