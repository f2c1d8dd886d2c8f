/**
 * The reference pages under docs/reference/, each generated from the code.
 * `npm run docs` writes them; tests/packaging/reference.test.ts fails when one
 * differs from what its generator makes now.
 */
import { errorsPage } from "./errors.ts";
import { logEventsPage } from "./log-events.ts";
import { metricsPage } from "./metrics.ts";
import { optionsPage } from "./options.ts";
import { statusPage } from "./status.ts";

export const REFERENCE_DIR = "docs/reference";

/** Hand-written pages that hold generated regions (scripts/reference/regions.ts). */
export const PAGES_WITH_REGIONS = ["README.md", "docs/players.md"];

export const PAGES: Record<string, () => string | Promise<string>> = {
  "errors.md": errorsPage,
  "log-events.md": logEventsPage,
  "metrics.md": metricsPage,
  "options.md": optionsPage,
  "status.md": statusPage,
};
