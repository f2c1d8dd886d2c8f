/** Where a test finds the project and its fixtures, wherever the test file sits under tests/. */
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const FIXTURES = join(ROOT, "tests", "fixtures");
export const TLS_DIR = join(FIXTURES, "tls");
/** The compiled binary the suites run against when it is built (.ci/run sets SOVA_TEST_BINARY). */
export const BINARY = process.env.SOVA_TEST_BINARY ?? join(ROOT, "dist", "sova-relay");
