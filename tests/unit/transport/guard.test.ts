/** The guard's decisions with an injected clock: no sockets, no waiting. */
import { describe, expect, test } from "bun:test";
import { addressGroup, maskedAddress, parseCidr } from "../../../src/lib/cidr.ts";
import { createGuard, type GuardOptions } from "../../../src/transport/guard.ts";

const DEFAULTS: GuardOptions = {
  allow: [],
  deny: [],
  maxConnectionsPerIp: 28,
  maxFailedRegistrations: 10,
  cooldownMs: 10_000,
};
const guard = (o: Partial<GuardOptions> = {}) => createGuard({ ...DEFAULTS, ...o });

describe("address groups", () => {
  test("IPv4 (also v4-mapped) is one address; IPv6 is its /64", () => {
    expect(addressGroup("203.0.113.7")).toBe("203.0.113.7");
    expect(addressGroup("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(addressGroup("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(addressGroup("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(addressGroup("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
  });

  test("public pages show an IPv4 /16 or an IPv6 /32, never the address", () => {
    expect(maskedAddress("203.0.113.7")).toBe("203.0.x.x");
    expect(maskedAddress("::ffff:203.0.113.7")).toBe("203.0.x.x");
    expect(maskedAddress("2001:db8:1:2::1")).toBe("2001:db8:x:x:x:x:x:x");
  });
});

describe("connections per address group", () => {
  test("the default lets --max-instances-per-ip (20) players behind one NAT join, with room to reconnect", () => {
    const g = guard();
    for (let i = 0; i < 28; i++) expect(g.admit("198.51.100.9", 0)).toBeNull();
    expect(g.admit("198.51.100.9", 0)).toBe("per_ip_limit");
    g.release("198.51.100.9");
    expect(g.admit("198.51.100.9", 0)).toBeNull();
  });

  test("one IPv6 /64 cannot get around the cap by using many addresses", () => {
    const g = guard({ maxConnectionsPerIp: 3 });
    for (let i = 1; i <= 3; i++) expect(g.admit(`2001:db8:5:6::${i}`, 0)).toBeNull();
    expect(g.admit("2001:db8:5:6::99", 0)).toBe("per_ip_limit");
    expect(g.admit("2001:db8:5:7::1", 0)).toBeNull(); // the next /64 is someone else
    g.release("2001:db8:5:6::2");
    expect(g.admit("2001:db8:5:6::abcd", 0)).toBeNull();
  });

  test("--deny and --allow still decide first", () => {
    const g = guard({ deny: [parseCidr("10.0.0.0/8")], allow: [parseCidr("10.0.0.0/8"), parseCidr("192.0.2.0/24")] });
    expect(g.admit("10.1.2.3", 0)).toBe("denied");
    expect(g.admit("198.51.100.1", 0)).toBe("not_allowed");
    expect(g.admit("192.0.2.1", 0)).toBeNull();
  });
});

describe("failed registrations", () => {
  test("a typo costs nothing: one failure leaves registrations open", () => {
    const g = guard();
    expect(g.registrationFailed("198.51.100.9", 0)).toBe(false);
    expect(g.registrationWait("198.51.100.9", 1)).toBe(0);
  });

  test(`a burst of 10 failures closes registrations for the cool-down (seconds, not minutes), \
then they open again`, () => {
    const g = guard();
    for (let i = 0; i < 9; i++) expect(g.registrationFailed("198.51.100.9", i)).toBe(false);
    expect(g.registrationFailed("198.51.100.9", 9)).toBe(true);
    expect(g.registrationWait("198.51.100.9", 10)).toBe(9_999);
    expect(g.registrationWait("198.51.100.9", 10_008)).toBe(1);
    expect(g.registrationWait("198.51.100.9", 10_009)).toBe(0);
    // Someone else is not affected.
    expect(g.registrationWait("198.51.100.10", 10)).toBe(0);
  });

  test("the cool-down covers the whole IPv6 /64", () => {
    const g = guard({ maxFailedRegistrations: 2 });
    g.registrationFailed("2001:db8::1", 0);
    expect(g.registrationFailed("2001:db8::2", 0)).toBe(true);
    expect(g.registrationWait("2001:db8::ffff", 1)).toBeGreaterThan(0);
    expect(g.registrationWait("2001:db8:0:1::1", 1)).toBe(0);
  });

  test("a guesser who never stops gets at most about 10 guesses a minute over time", () => {
    const g = guard();
    const ip = "198.51.100.9";
    let guesses = 0;
    // An hour of trying every 100 ms, whenever registrations are open.
    for (let now = 0; now < 3_600_000; now += 100) {
      if (g.registrationWait(ip, now) > 0) continue;
      guesses++;
      g.registrationFailed(ip, now);
    }
    // A burst of 10, then one per cool-down (10 s): 6 a minute, under the refill of 10.
    expect(guesses).toBeLessThanOrEqual(10 + 60 * 10);
    expect(guesses).toBeGreaterThan(60 * 5);
  });

  test("failures are earned back at the refill rate: 10 a minute", () => {
    const g = guard();
    for (let i = 0; i < 5; i++) g.registrationFailed("198.51.100.9", 0);
    // A minute later the bucket is full again: 9 more failures do not close registrations.
    for (let i = 0; i < 9; i++) expect(g.registrationFailed("198.51.100.9", 60_000)).toBe(false);
    expect(g.registrationFailed("198.51.100.9", 60_000)).toBe(true);
  });

  test(`sweep forgets full buckets, ended cool-downs and old log marks: \
a scan from many addresses leaves nothing`, () => {
    const g = guard();
    for (let i = 0; i < 1000; i++) {
      const ip = `2001:db8:${i.toString(16)}::1`;
      for (let j = 0; j < 10; j++) g.registrationFailed(ip, 0);
      g.shouldLog(ip, 0);
    }
    expect(g.tracked).toBe(3000);
    g.sweep(30_000);
    expect(g.tracked).toBe(2000); // cool-downs over; buckets still refilling, log marks under a minute old
    g.sweep(60_000);
    expect(g.tracked).toBe(0);
  });

  test("refusals are logged once a minute per group", () => {
    const g = guard();
    expect(g.shouldLog("2001:db8::1", 0)).toBe(true);
    expect(g.shouldLog("2001:db8::2", 1000)).toBe(false);
    expect(g.shouldLog("2001:db8::2", 60_000)).toBe(true);
  });
});
