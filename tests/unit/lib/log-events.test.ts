/**
 * The table of log events (src/lib/log.ts LOG_EVENTS) against the code that logs them:
 * every call site's level is one the table gives, every level the table gives is used,
 * every event is logged somewhere, and the events that go through the per-address
 * repeats are marked so. docs/reference/log-events.md is generated from the table,
 * so this is what keeps that page true.
 */
import { describe, expect, test } from "bun:test";
import { Glob } from "bun";
import { join } from "node:path";
import { LOG_EVENTS, type LogEvent } from "../../../src/lib/log.ts";
import { ROOT } from "../../support/paths.ts";

interface Site {
  event: string;
  level: string;
  repeated: boolean;
  file: string;
}

/** Call sites as the code writes them: `log.warn("event", ...)`, `logRepeated(s, "debug", "event", ...)`. */
async function callSites(): Promise<{ sites: Site[]; literals: Set<string> }> {
  const sites: Site[] = [];
  const literals = new Set<string>();
  for await (const file of new Glob("src/**/*.ts").scan(ROOT)) {
    if (file === "src/lib/log.ts") continue;
    const text = await Bun.file(join(ROOT, file)).text();
    for (const m of text.matchAll(/\.(error|warn|info|debug|trace)\(\s*"([a-z_]+)"/g))
      sites.push({ event: m[2]!, level: m[1]!, repeated: false, file });
    for (const m of text.matchAll(/logRepeated\(\s*\w+,\s*"(\w+)",\s*"([a-z_]+)"/g))
      sites.push({ event: m[2]!, level: m[1]!, repeated: true, file });
    for (const m of text.matchAll(/repeats\.first\(\s*"([a-z_]+)"[^)]*level: "(\w+)"/g))
      sites.push({ event: m[1]!, level: m[2]!, repeated: true, file });
    for (const m of text.matchAll(/"([a-z_]+)"/g)) literals.add(m[1]!);
  }
  return { sites, literals };
}

const { sites, literals } = await callSites();
const events = Object.keys(LOG_EVENTS) as LogEvent[];

describe("LOG_EVENTS matches the code that logs", () => {
  test("the scan finds the call sites (a sanity check on the patterns)", () => {
    expect(sites.length).toBeGreaterThan(60);
    expect(sites.some((s) => s.repeated)).toBe(true);
  });

  test("every call site logs a known event at a level the table gives", () => {
    const wrong = sites
      .filter(
        (s) =>
          !(s.event in LOG_EVENTS) || !(LOG_EVENTS[s.event as LogEvent].levels as readonly string[]).includes(s.level),
      )
      .map((s) => `${s.event} at ${s.level} in ${s.file}`);
    expect(wrong).toEqual([]);
  });

  test("every level the table gives is used, and every event is logged somewhere", () => {
    const used = new Set(sites.map((s) => `${s.event} ${s.level}`));
    const unused = events.flatMap((e) =>
      LOG_EVENTS[e].levels.filter((l) => !used.has(`${e} ${l}`)).map((l) => `${e} ${l}`),
    );
    // Written by reportRepeats under the event name its first line had: seen as a literal only.
    const missing = events.filter((e) => !literals.has(e));
    expect(missing).toEqual([]);
    expect(unused).toEqual([]);
  });

  test("events that go through the per-address repeats are marked per_address", () => {
    const repeated = new Set(sites.filter((s) => s.repeated).map((s) => s.event as LogEvent));
    expect([...repeated].filter((e) => LOG_EVENTS[e].aggregation !== "per_address")).toEqual([]);
  });

  test("every event has a one-line meaning", () => {
    for (const e of events) {
      expect(LOG_EVENTS[e].meaning.length).toBeGreaterThan(10);
      expect(LOG_EVENTS[e].meaning).not.toContain("\n");
    }
  });
});
