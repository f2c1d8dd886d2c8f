/** docs/reference/log-events.md: every event the relay logs, from LOG_EVENTS in src/lib/log.ts. */
import { type Aggregation, LOG_EVENTS, type LogEvent } from "../../src/lib/log.ts";
import { code, generatedNote, page, table } from "./markdown.ts";

const AGGREGATION: Record<Aggregation, string> = {
  none: "every occurrence is a line",
  per_address:
    "the first per address (IPv6: per /64) in a minute is a line; the rest are counted, and written as one line" +
    ' under the same event name with `"count"` and `"aggregated": true` when the minute ends (connection' +
    " refusals at the door are counted in `/metrics` only). Very many addresses at once share 50 first lines a" +
    ' second; past it, their events are counted under `"ip": "many addresses"`',
  periodic: "at most one line per period (10 s to a minute, per event), carrying the count since the previous one",
};

export function logEventsPage(): string {
  const events = Object.keys(LOG_EVENTS) as LogEvent[];
  const rows = events.map((e) => {
    const spec = LOG_EVENTS[e];
    return [code(e), spec.levels.join(", "), spec.audit ? "yes" : "", spec.aggregation, spec.meaning];
  });
  const audit = events.filter((e) => LOG_EVENTS[e].audit);
  return page(
    generatedNote("LOG_EVENTS in src/lib/log.ts (scripts/reference/log-events.ts)"),
    "# Log events",
    "Every line the relay (and `sova-relay tunnel`) logs carries one of these event names: in" +
      " `--log-format json` as `event`, beside `time`, `level`, `msg` and fields such as `ip`, `instance`," +
      " `session` (the keyed short hash) and `reason`. Match on the event name, never on the wording." +
      " Text from the network is escaped (control, bidi and zero-width characters appear as `\\uXXXX`)." +
      " No line carries a token. How to read them: [operations.md](../operations.md#logs-and-the-audit-file).",
    `## Events (${events.length})`,
    table(["event", "level", "audit", "aggregation", "meaning"], rows),
    "## Audit",
    `With \`--audit-log FILE\`, these ${audit.length} events are also appended to FILE as JSON lines, with full` +
      ` addresses, whatever \`--log-level\` says: ${audit.map(code).join(", ")}. The file is reopened on SIGHUP.`,
    "## Aggregation",
    table(
      ["aggregation", "what it means"],
      (Object.keys(AGGREGATION) as Aggregation[]).map((a) => [code(a), AGGREGATION[a]]),
    ),
  );
}
