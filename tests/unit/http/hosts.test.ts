import { describe, expect, test } from "bun:test";
import { hostAllowed, hostOf, shownHost } from "../../../src/http/hosts.ts";

describe("Host names the HTTP endpoints answer", () => {
  const allowed = new Set(["relay.example.org"]);

  test("IP addresses, localhost, names without a dot and allowed names, with or without a port; nothing else", () => {
    for (const h of ["127.0.0.1:8080", "203.0.113.5", "[::1]:8080", "[2001:db8::1]", "localhost", "LOCALHOST:80"])
      expect(hostAllowed(h, allowed)).toBe(true);
    for (const h of ["relay.example.org:443", "Relay.Example.Org.", "a.localhost", "relay:8080"])
      expect(hostAllowed(h, allowed)).toBe(true);
    for (const h of ["evil.example", "relay.example.org.evil.example", "127.0.0.1.nip.io"])
      expect(hostAllowed(h, allowed)).toBe(false);
    expect(hostAllowed(null, allowed)).toBe(true);
  });

  test("the name echoed in a refusal keeps only what a host name has", () => {
    expect(hostOf("[::1]:80")).toBe("::1");
    expect(shownHost("evil.example<script>:80")).toBe("evil.example?script?");
  });
});
