/** The client's address behind a reverse proxy (src/transport/forwarded.ts). */
import { describe, expect, test } from "bun:test";
import { parseCidr } from "../../../src/lib/cidr.ts";
import { clientAddress } from "../../../src/transport/forwarded.ts";

describe("clientAddress", () => {
  test("the right-most untrusted entry counts: what the client wrote further left proves nothing", () => {
    const trust = [parseCidr("10.0.0.0/8")];
    const h = (v: Record<string, string>) => new Headers(v);
    expect(clientAddress("10.0.0.2", h({ "x-forwarded-for": "1.1.1.1, 198.51.100.9, 10.0.0.3" }), trust)).toBe(
      "198.51.100.9",
    );
    expect(clientAddress("192.0.2.1", h({ "x-forwarded-for": "198.51.100.9" }), trust)).toBe("192.0.2.1");
    expect(clientAddress("10.0.0.2", h({}), trust)).toBe("10.0.0.2");
    expect(clientAddress("10.0.0.2", h({ "x-forwarded-for": "garbage" }), trust)).toBe("10.0.0.2");
    expect(clientAddress("10.0.0.2", h({ forwarded: "for=198.51.100.1:99, for=10.0.0.9" }), trust)).toBe(
      "198.51.100.1",
    );
    expect(clientAddress("10.0.0.2", h({ "x-forwarded-for": "10.0.0.7" }), trust)).toBe("10.0.0.7");
  });
});
