/**
 * The reference pages under docs/reference/, each generated from the code.
 * `npm run docs` writes them; tests/packaging/reference.test.ts fails when one
 * differs from what its generator makes now.
 */
import { errorsPage } from "./errors.ts";
import { logEventsPage } from "./log-events.ts";
import { metricsPage } from "./metrics.ts";
import { statusPage } from "./status.ts";

export const REFERENCE_DIR = "docs/reference";

export const PAGES: Record<string, () => string | Promise<string>> = {
  "errors.md": errorsPage,
  "log-events.md": logEventsPage,
  "metrics.md": metricsPage,
  "status.md": statusPage,
};
