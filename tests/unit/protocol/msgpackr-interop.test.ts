/**
 * msgpackr with its defaults, as a JavaScript peer would use it. Its encodings
 * that rmp-serde accepts (map16, int64 for BigInt) must decode here; its defaults
 * that rmp-serde refuses (a float for a u64, bin for Vec<u8>) must be refused here
 * too. The relay's own msgpackr is set up (src/protocol/msgpack.ts) never to write them.
 */
import { parse as parseUuid } from "uuid";
import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr/pack";
import { decodeGeneral, decodeMessage, decodeStateUpdate, encodeMessage } from "../../../src/protocol/messages.ts";

const packr = new Packr({ useRecords: false, variableMapSize: false });
const id = parseUuid("123e4567-e89b-12d3-a456-426614174000");

describe("msgpackr interop", () => {
  test("a StateUpdate msgpackr writes with map16 headers and a BigInt timestamp decodes", () => {
    const body = packr.pack({
      StateUpdate: { source_instance_id: Buffer.from(id), timestamp: 1705314615000n, update_data: [1, 2, 200] },
    });
    expect(body[0]).toBe(0xde); // map16: not what rmp-serde writes, but what it reads
    const msg = decodeMessage(body);
    expect(msg).toMatchObject({ type: "StateUpdate", timestamp: 1705314615000n });
    // The fast path takes it (update_data stays a view of the body), with the general path's result.
    const fast = decodeStateUpdate(body)!;
    expect(fast.update_data.buffer).toBe(body.buffer);
    expect(Buffer.from(encodeMessage(fast)).equals(Buffer.from(encodeMessage(decodeGeneral(body))))).toBe(true);
    // Re-encoded the way rmp-serde would, the update data stays an array.
    expect(Buffer.from(encodeMessage(msg)).toString("hex")).toContain("ab7570646174655f64617461930102ccc8");
  });

  test("msgpackr's default for a JS timestamp (float64) is refused, as rmp-serde refuses it", () => {
    const body = packr.pack({ Ping: { timestamp: 1705314615000.5 } });
    expect(() => decodeMessage(body)).toThrow("invalid type: floating point `1705314615000.5`, expected u64");
  });

  test("msgpackr's bin for a Uint8Array update_data is refused", () => {
    const body = packr.pack({
      StateUpdate: { source_instance_id: Buffer.from(id), timestamp: 1, update_data: new Uint8Array([1, 2]) },
    });
    expect(() => decodeMessage(body)).toThrow("invalid type: byte array, expected a sequence");
  });

  test("msgpackr reads what the relay writes (it is plain MessagePack)", () => {
    const decoded = new Packr({ useRecords: false, int64AsType: "bigint" }).unpack(
      encodeMessage({ type: "Pong", timestamp: 2n ** 64n - 1n }),
    );
    expect(decoded).toEqual({ Pong: { timestamp: 2n ** 64n - 1n } });
  });
});
