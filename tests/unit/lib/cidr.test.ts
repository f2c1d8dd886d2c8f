import { describe, expect, test } from "bun:test";
import { cidrContains, parseCidr } from "../../../src/lib/cidr.ts";

describe("address ranges", () => {
  test("IPv4, including v4-mapped IPv6 addresses from dual-stack listeners", () => {
    const net = parseCidr("203.0.113.0/24");
    expect(cidrContains(net, "203.0.113.7")).toBe(true);
    expect(cidrContains(net, "::ffff:203.0.113.7")).toBe(true);
    expect(cidrContains(net, "203.0.114.1")).toBe(false);
    expect(cidrContains(parseCidr("127.0.0.1"), "127.0.0.1")).toBe(true);
    expect(cidrContains(parseCidr("127.0.0.1"), "127.0.0.2")).toBe(false);
    expect(cidrContains(parseCidr("0.0.0.0/0"), "8.8.8.8")).toBe(true);
    expect(cidrContains(parseCidr("0.0.0.0/0"), "::1")).toBe(false);
  });

  test("IPv6", () => {
    expect(cidrContains(parseCidr("::1"), "::1")).toBe(true);
    expect(cidrContains(parseCidr("::1/128"), "::2")).toBe(false);
    const doc = parseCidr("2001:db8::/32");
    expect(cidrContains(doc, "2001:db8:1234::5")).toBe(true);
    expect(cidrContains(doc, "2001:db9::1")).toBe(false);
    expect(cidrContains(parseCidr("::/0"), "127.0.0.1")).toBe(true);
    expect(cidrContains(parseCidr("fe80::/10"), "fe80::1%eth0")).toBe(true);
  });

  test("bad ranges are refused with a clear message", () => {
    expect(() => parseCidr("300.1.1.1/8")).toThrow("invalid address range '300.1.1.1/8'");
    expect(() => parseCidr("10.0.0.0/33")).toThrow("invalid prefix length in '10.0.0.0/33' (expected 0-32)");
    expect(() => parseCidr("10.0.0.0/x")).toThrow("invalid prefix length");
    expect(() => parseCidr("example.org")).toThrow("invalid address range");
  });
});
