/** The tunnel's hand-read Mark against the general path: the same message, or null and the general path decides. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeMark } from "../../../src/protocol/fast-mark.ts";
import { packBody } from "../../../src/protocol/msgpack.ts";
import { decodeMessage, encodeMessage } from "../../../src/protocol/messages.ts";

describe("the Mark read by hand", () => {
  test("every Mark the relay writes reads as the general path reads it", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        (origin, q, n) => {
          const body = encodeMessage({ type: "Mark", origin, q, n });
          const fast = decodeMark(body);
          // Taken by hand, or left to the general path (a long or non-ASCII origin): never read differently.
          if (fast !== null) expect(fast).toEqual(decodeMessage(body, { extensions: true }) as typeof fast);
          if (origin.length < 32 && [...origin].every((c) => c.charCodeAt(0) < 0x80)) expect(fast).not.toBeNull();
        },
      ),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 2000) },
    );
  });

  test("fields in another order are read; anything else is left to the general path", () => {
    const reordered = packBody({ Mark: { n: 3, origin: "relay-a:1", q: 2 } });
    expect(decodeMark(reordered)).toEqual({ type: "Mark", origin: "relay-a:1", q: 2n, n: 3n });
    expect(decodeMark(packBody({ Mark: { origin: "x", q: -1, n: 1 } }))).toBeNull();
    expect(decodeMark(packBody({ Mark: { origin: "x", q: 1 } }))).toBeNull();
    expect(decodeMark(packBody({ Mark: { origin: "x", q: 1, q2: 1 } }))).toBeNull();
    expect(decodeMark(encodeMessage({ type: "Ack", n: 1n }))).toBeNull();
    expect(decodeMark(new Uint8Array(0))).toBeNull();
  });
});
