/** The connection guard as a pure function of its calls and an injected clock: no sockets, no waiting. */
import { describe, expect, test } from "bun:test";
import { parseCidr } from "../src/net/cidr.ts";
import { createGuard, type GuardOptions } from "../src/relay/guard.ts";

const MINUTE = 60_000;

function guard(options: Partial<GuardOptions> = {}) {
  return createGuard({ allow: [], deny: [], maxConnectionsPerIp: 2, maxFailedRegistrations: 3, cooldownMs: 5 * MINUTE, ...options });
}

describe("guard", () => {
  test("--deny beats --allow; with --allow set, everything else is refused", () => {
    const g = guard({ allow: [parseCidr("10.0.0.0/8")], deny: [parseCidr("10.1.0.0/16")] });
    expect(g.admit("10.2.3.4", 0)).toBeNull();
    expect(g.admit("10.1.2.3", 0)).toBe("denied");
    expect(g.admit("192.168.1.1", 0)).toBe("not_allowed");
  });

  test("connections per address are capped, and released ones free their place", () => {
    const g = guard();
    expect(g.admit("10.0.0.1", 0)).toBeNull();
    expect(g.admit("10.0.0.1", 0)).toBeNull();
    expect(g.admit("10.0.0.1", 0)).toBe("per_ip_limit");
    expect(g.admit("10.0.0.2", 0)).toBeNull();
    g.release("10.0.0.1");
    expect(g.admit("10.0.0.1", 0)).toBeNull();
  });

  test("more failed registrations than allowed in a minute start a cool-down, which ends on time", () => {
    const g = guard();
    const ip = "10.0.0.9";
    for (let i = 0; i < 3; i++) expect(g.registrationFailed(ip, i * 1000)).toBe(false);
    expect(g.registrationFailed(ip, 3000)).toBe(true);
    expect(g.admit(ip, 3000 + 5 * MINUTE - 1)).toBe("cooldown");
    expect(g.admit(ip, 3000 + 5 * MINUTE)).toBeNull();
  });

  test("failures spread over more than a minute never add up to a cool-down", () => {
    const g = guard();
    for (let i = 0; i < 20; i++) expect(g.registrationFailed("10.0.0.9", i * 21_000)).toBe(false);
  });

  test("a refused address is logged at most once a minute", () => {
    const g = guard();
    expect(g.shouldLog("10.0.0.3", 0)).toBe(true);
    expect(g.shouldLog("10.0.0.3", MINUTE - 1)).toBe(false);
    expect(g.shouldLog("10.0.0.4", 1)).toBe(true);
    expect(g.shouldLog("10.0.0.3", MINUTE)).toBe(true);
  });

  test("a scan from 10,000 addresses leaves nothing behind once swept", () => {
    const g = guard({ maxFailedRegistrations: 0 });
    for (let i = 0; i < 10_000; i++) {
      const ip = `10.${(i >> 8) & 0xff}.${i & 0xff}.1`;
      expect(g.admit(ip, i)).toBeNull();
      g.registrationFailed(ip, i);
      g.shouldLog(ip, i);
      g.release(ip);
    }
    expect(g.tracked).toBeGreaterThan(10_000);
    g.sweep(10_000 + 5 * MINUTE);
    expect(g.tracked).toBe(0);
  });
});
