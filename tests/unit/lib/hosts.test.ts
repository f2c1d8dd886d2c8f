import { describe, expect, test } from "bun:test";
import { hostAllowed, hostOf, originAllowed, shownHost } from "../../../src/lib/hosts.ts";

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

  test("a page may open /relay when it sends no Origin, its origin is allowed, or it is the relay's own page", () => {
    const origins = new Set(["https://sova.example.org"]);
    expect(originAllowed(null, "127.0.0.1:8080", origins, allowed)).toBe(true);
    expect(originAllowed("https://sova.example.org", "relay.example.org", origins, allowed)).toBe(true);
    expect(originAllowed("http://127.0.0.1:8080", "127.0.0.1:8080", origins, allowed)).toBe(true);
    expect(originAllowed("https://relay.example.org", "relay.example.org", origins, allowed)).toBe(true);
    // A rebound name is its own origin and host, but not a name the relay answers for.
    expect(originAllowed("http://evil.example:8080", "evil.example:8080", origins, allowed)).toBe(false);
    expect(originAllowed("https://evil.example", "127.0.0.1:8080", origins, allowed)).toBe(false);
  });
});
