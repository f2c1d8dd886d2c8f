/**
 * The rmp-serde vectors (tests/fixtures/vectors.json, copied from the shared
 * contract): every frame the relay sends must be byte-identical to rmp-serde's,
 * everything a Sova instance sends must decode, and what rmp-serde refuses is refused.
 */
import { describe, expect, test } from "bun:test";
import { MsgpackReader } from "../src/protocol/msgpack.ts";
import {
  broadcastPrefix,
  byteArrayValues,
  decodeMessage,
  encodeBroadcastFrame,
  encodeFrame,
  systemTimeFromMillis,
  encodeRegistrationFrame,
  instanceInfoHead,
  encodeMessage,
  readByteArray,
  toByteArrayWire,
  uuidFromString,
  uuidToString,
  type Message,
} from "../src/protocol/messages.ts";
import { hex, loadVectors, messageFromVector, unhex, vector } from "./support/vectors.ts";

const vectors = loadVectors();

describe("relay_to_instance: encoded byte for byte as rmp-serde does", () => {
  for (const v of vectors.relay_to_instance) {
    test(v.name, () => {
      const msg = messageFromVector(v.message);
      expect(hex(encodeMessage(msg))).toBe(v.hex);
      // And what we send reads back as itself.
      expect(hex(encodeMessage(decodeMessage(unhex(v.hex))))).toBe(v.hex);
    });
  }

  test("the broadcast fast path writes the same bytes as the generic encoder", () => {
    const broadcasts = vectors.relay_to_instance.filter((v) => "StateBroadcast" in v.message);
    expect(broadcasts.length).toBeGreaterThan(5);
    for (const v of broadcasts) {
      const msg = messageFromVector(v.message) as Extract<Message, { type: "StateBroadcast" }>;
      const frame = encodeBroadcastFrame(broadcastPrefix(msg.source_instance_name), msg.timestamp, msg.update_data);
      expect(hex(frame.subarray(4))).toBe(v.hex);
      expect(new DataView(frame.buffer).getUint32(0)).toBe(frame.length - 4);
    }
  });
});

describe("instance_to_relay: decoded", () => {
  for (const v of vectors.instance_to_relay) {
    test(v.name, () => {
      const decoded = decodeMessage(unhex(v.hex));
      expect(normalise(decoded)).toEqual(normalise(messageFromVector(v.message)));
      // rmp-serde's own encoding is already canonical: re-encoding changes nothing.
      expect(hex(encodeMessage(decoded))).toBe(v.hex);
    });
  }
});

describe("accepted_other_encodings: decoded, and re-encoded canonically", () => {
  for (const v of vectors.accepted_other_encodings) {
    test(`${v.name} (${v.note})`, () => {
      // Fields upstream does not know are ignored for the comparison; the
      // relay's own extension field is checked on its own below.
      const decoded = withoutExtensions(decodeMessage(unhex(v.hex)));
      expect(normalise(decoded)).toEqual(normalise(messageFromVector(v.message)));
      expect(hex(encodeMessage(decoded))).toBe(v.canonical_hex!);
    });
  }

  test("the capabilities extension field is read when present", () => {
    const decoded = decodeMessage(unhex(vector(vectors.accepted_other_encodings, "register_extra_field").hex));
    expect(decoded).toMatchObject({ type: "RegisterInstance", capabilities: ["presence"] });
  });
});

describe("rejected_by_rmp_serde: refused with rmp-serde's reason", () => {
  for (const v of vectors.rejected_by_rmp_serde) {
    test(v.name, () => {
      expect(() => decodeMessage(unhex(v.hex))).toThrow(v.rmp_serde_error!);
    });
  }
});

describe("u64 and byte arrays", () => {
  test("u64 survives exactly at every encoding boundary up to 2^64-1", () => {
    for (const t of [0n, 127n, 128n, 255n, 256n, 65535n, 65536n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
      const msg: Message = { type: "Ping", timestamp: t };
      const decoded = decodeMessage(encodeMessage(msg));
      expect(decoded).toMatchObject({ type: "Ping", timestamp: t });
      // Never a float marker (0xca/0xcb), never signed (0xd0-0xd3).
      const marker = encodeMessage(msg)[encodeMessage(msg).length - (t < 128n ? 1 : t < 256n ? 2 : t < 65536n ? 3 : t < 2n ** 32n ? 5 : 9)]!;
      expect([0xca, 0xcb, 0xd0, 0xd1, 0xd2, 0xd3]).not.toContain(marker);
    }
  });

  test("non-canonical byte arrays take the fallback and come out as rmp-serde writes them", () => {
    // array16 header for 3 elements, 5 as uint8, 200 as uint16, 7 as int8
    const odd = unhex("dc0003cc05cd00c8d007");
    const wire = readByteArray(new MsgpackReader(odd));
    expect(hex(wire)).toBe("9305ccc807");
    expect([...byteArrayValues(wire)]).toEqual([5, 200, 7]);
  });

  test("canonical byte arrays are passed through as a view of the input (no copy)", () => {
    const input = toByteArrayWire(new Uint8Array([1, 2, 200]));
    const wire = readByteArray(new MsgpackReader(input));
    expect(wire.buffer).toBe(input.buffer);
  });

  test("fast path and fallback agree on random payloads and timestamps", () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 500; i++) {
      const size = Math.floor(rand() ** 3 * 70000);
      const values = new Uint8Array(size).map(() => Math.floor(rand() * 256));
      const timestamp = BigInt(Math.floor(rand() * 2 ** 32)) * BigInt(Math.floor(rand() * 2 ** 32));
      const name = `inst-${i}-${"é".repeat(i % 40)}`;
      const generic = encodeMessage({ type: "StateBroadcast", source_instance_name: name, timestamp, update_data: toByteArrayWire(values) });
      // The relay's path: decode a StateUpdate, copy its fields into a broadcast.
      const update = decodeMessage(encodeMessage({ type: "StateUpdate", source_instance_id: uuidFromString("123e4567-e89b-12d3-a456-426614174000"), timestamp, update_data: toByteArrayWire(values) }));
      if (update.type !== "StateUpdate") throw new Error("decoded the wrong variant");
      const fast = encodeBroadcastFrame(broadcastPrefix(name), update.timestamp, update.update_data).subarray(4);
      expect(hex(fast)).toBe(hex(generic));
    }
  });

  test("UUIDs go out as bin 16 and come back as their canonical text", () => {
    const id = uuidFromString("9f1c2a7e-5b3d-4e8f-a1c2-3d4e5f607182");
    expect(uuidToString(id)).toBe("9f1c2a7e-5b3d-4e8f-a1c2-3d4e5f607182");
    const body = encodeMessage({ type: "InstanceDisconnected", instance_id: id, instance_name: "bob" });
    expect(hex(body)).toContain("c4109f1c2a7e");
  });
});

/** Byte views compare by content. */
function normalise(msg: Message): unknown {
  return JSON.parse(JSON.stringify(msg, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? hex(v) : v)));
}

function withoutExtensions(msg: Message): Message {
  return msg.type === "RegisterInstance" ? { ...msg, capabilities: [] } : msg;
}

describe("RegistrationResponse built from cached InstanceInfo heads", () => {
  test("is byte-identical to the generic encoding (and so to rmp-serde's)", () => {
    const make = (i: number) => {
      const ms = 1705314615000 + i * 1237;
      const info = { id: uuidFromString(`123e4567-e89b-42d3-a456-4266141740${String(i).padStart(2, "0")}`), name: `inst-${i}-${"é".repeat(i)}`, version: "0.1.0", connected_at: systemTimeFromMillis(ms - 5000) };
      return { info: { ...info, last_activity: systemTimeFromMillis(ms) }, known: { infoHead: instanceInfoHead(info), lastActivity: ms } };
    };
    for (const count of [0, 1, 2, 15, 16, 40]) {
      const all = Array.from({ length: count }, (_, i) => make(i));
      const id = uuidFromString("00000000-0000-4000-8000-000000000001");
      const fast = encodeRegistrationFrame("Registered as carol", id, all.map((a) => a.known));
      const generic = encodeFrame({ type: "RegistrationResponse", success: true, message: "Registered as carol", assigned_id: id, current_instances: all.map((a) => a.info) });
      expect(hex(fast)).toBe(hex(generic));
    }
  });
});
