import { describe, expect, test } from "bun:test";
import { AUDIT_EVENTS, createLogger, isAuditEvent } from "../../../src/lib/log.ts";

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  return { lines, log: createLogger({ ...options, write: (l) => lines.push(l) }) };
}

describe("logger", () => {
  test("text lines look like env_logger's: time, level, target, message", () => {
    const { lines, log } = capture();
    log.info("registered", "Instance 'alice-studio' registered with ID 123e4567-e89b-42d3-a456-426614174000");
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO {2}sova_relay: Instance 'alice-studio' registered with ID 123e4567-/,
    );
  });

  test("repeated lines are all written: consola's throttling is off", () => {
    const { lines, log } = capture();
    for (let i = 0; i < 20; i++) log.warn("rate_limited", "same line");
    expect(lines.length).toBe(20);
    expect(lines.join("")).not.toContain("repeated");
  });

  test("levels filter: debug hidden at info, shown at debug", () => {
    const info = capture({ level: "info" });
    info.log.debug("probe", "hidden");
    info.log.error("http_error", "shown");
    expect(info.lines.length).toBe(1);
    const debug = capture({ level: "debug" });
    debug.log.debug("probe", "shown");
    expect(debug.lines.length).toBe(1);
  });

  test("json: one object a line with time, level, event and fields", () => {
    const { lines, log } = capture({ format: "json" });
    log.warn("registration_rejected", "rejected", { ip: "10.0.0.1", reason: "version" });
    const obj = JSON.parse(lines[0]!);
    expect(obj).toMatchObject({
      level: "warn",
      event: "registration_rejected",
      msg: "rejected",
      ip: "10.0.0.1",
      reason: "version",
    });
    expect(lines[0]!.endsWith("\n")).toBe(true);
  });

  test("a newline in a peer-supplied string cannot forge a second log line", () => {
    const { lines, log } = capture();
    log.warn(
      "registration_rejected",
      "Version mismatch: expected 0.1.0, got 1\n2024-01-01T00:00:00Z INFO  sova_relay: forged",
    );
    expect(lines.length).toBe(1);
    expect(lines[0]!.split("\n").length).toBe(2); // the line and its own terminator
  });

  test("bidi controls, zero-width characters and line separators in a peer-supplied string are escaped", () => {
    const { lines, log } = capture();
    log.warn("registration_rejected", "got \u202eevil\u2028line\u2029para\u200bzw");
    expect(lines[0]).toContain("got \\u202eevil\\u2028line\\u2029para\\u200bzw");
    expect(lines[0]).not.toMatch(/[\u202e\u2028\u2029\u200b]/);
  });

  test("the audit log takes its events at any level, and only those", () => {
    const audit: string[] = [];
    const { lines, log } = capture({ level: "error", audit: (l) => audit.push(l) });
    log.debug("connection_accepted", "New connection from 10.0.0.1:5000", { ip: "10.0.0.1" });
    log.debug("probe", "Empty frame before registration");
    expect(lines.length).toBe(0);
    expect(audit.length).toBe(1);
    expect(JSON.parse(audit[0]!)).toMatchObject({ level: "debug", event: "connection_accepted", ip: "10.0.0.1" });
    expect(AUDIT_EVENTS.every(isAuditEvent)).toBe(true);
    expect(isAuditEvent("probe")).toBe(false);
  });

  test("event names are a closed set: a misspelt one does not compile", () => {
    const { lines, log } = capture();
    // @ts-expect-error "registerd" is no LogEvent (npm run typecheck fails if this line compiles)
    log.info("registerd", "typo");
    expect(lines.length).toBe(1);
  });
});
