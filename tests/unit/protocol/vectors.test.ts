/**
 * The rmp-serde vectors (tests/fixtures/vectors.json, copied from the shared
 * contract): every frame the relay sends must be byte-identical to rmp-serde's,
 * everything a Sova instance sends must decode, what rmp-serde refuses is refused
 * in its words, and the unusual bodies of `edge_cases` get rmp-serde's verdict,
 * except the few msgpackr cannot tell apart (listed below with the reason).
 */
import { parse as parseUuid, stringify as stringifyUuid } from "uuid";
import { describe, expect, test } from "bun:test";
import {
  broadcastPrefix,
  byteArrayValues,
  decodeGeneral,
  decodeMessage,
  decodeStateUpdate,
  encodeBroadcastFrame,
  encodeFrame,
  encodeMessage,
  instanceEntries,
  instanceInfoHead,
  systemTimeFromMillis,
  toByteArrayWire,
  type Message,
} from "../../../src/protocol/messages.ts";
import {
  encodeRegistrationFrameWithEntries,
  hex,
  loadVectors,
  messageFromVector,
  unhex,
  vector,
  type Vector,
} from "../../support/vectors.ts";

const vectors = loadVectors();

/** What rmp-serde does with a body: "ok <canonical hex>" or "error <text>". */
function verdict(decode: (body: Uint8Array) => Message, body: Uint8Array): string {
  try {
    return `ok ${hex(encodeMessage(withoutExtensions(decode(body))))}`;
  } catch (error) {
    return `error ${(error as Error).message}`;
  }
}
const expected = (v: Vector) =>
  v.rmp_serde_error !== undefined ? `error ${v.rmp_serde_error}` : `ok ${v.canonical_hex ?? v.hex}`;

/**
 * Where msgpackr hands the validator the same value for bodies rmp-serde tells apart.
 * No rmp-serde sender writes any of these; the relay answers them as shown.
 */
const MSGPACKR_CANNOT_TELL: Record<string, string> = {
  "ping float64 5.0": "a float with a whole value below 2^32 decodes to the same number as the integer",
  "ping float32 5.0": "a float with a whole value below 2^32 decodes to the same number as the integer",
  "update_data [1.0] float64": "a float with a whole value below 2^32 decodes to the same number as the integer",
  "update_data [200.0] float32": "a float with a whole value below 2^32 decodes to the same number as the integer",
  "duplicate field timestamp": "a Map keeps the last of two equal keys",
  "duplicate variant key": "a Map keeps the last of two equal keys",
  "unknown field = d4 72 (msgpackr record def)": "msgpackr always reads fixext 0x72 as its own record definition",
  "instance_name invalid UTF-8 str": "msgpackr decodes invalid UTF-8 as U+FFFD",
  "uuid as str8 of 16 non-UTF-8 bytes": "msgpackr decodes invalid UTF-8 as U+FFFD, so the 16 bytes are lost",
};

describe("relay_to_instance: encoded byte for byte as rmp-serde does", () => {
  for (const v of vectors.relay_to_instance) {
    test(v.name, () => {
      const msg = messageFromVector(v.message);
      expect(hex(encodeMessage(msg))).toBe(v.hex);
      expect(hex(encodeFrame(msg).subarray(4))).toBe(v.hex);
      // And what we send reads back as itself.
      expect(hex(encodeMessage(decodeMessage(unhex(v.hex), { extensions: true })))).toBe(v.hex);
    });
  }

  test("the broadcast built around the sender's encoded name writes the same bytes", () => {
    const broadcasts = vectors.relay_to_instance.filter((v) => "StateBroadcast" in v.message);
    expect(broadcasts.length).toBeGreaterThan(5);
    for (const v of broadcasts) {
      const msg = messageFromVector(v.message) as Extract<Message, { type: "StateBroadcast" }>;
      const frame = encodeBroadcastFrame(broadcastPrefix(msg.source_instance_name), msg.timestamp, msg.update_data);
      expect(hex(frame.subarray(4))).toBe(v.hex);
      expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(frame.length - 4);
    }
  });
});

describe("instance_to_relay: decoded on the fast path and the general one", () => {
  for (const v of vectors.instance_to_relay) {
    test(v.name, () => {
      for (const decode of [decodeMessage, decodeGeneral]) {
        const decoded = decode(unhex(v.hex));
        expect(normalise(decoded)).toEqual(normalise(messageFromVector(v.message)));
        // rmp-serde's own encoding is already canonical: re-encoding changes nothing.
        expect(hex(encodeMessage(decoded))).toBe(v.hex);
      }
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

describe("edge_cases: rmp-serde 1.1.1's verdict and words", () => {
  const exact = vectors.edge_cases.filter((v) => !(v.name in MSGPACKR_CANNOT_TELL));
  for (const v of exact) {
    test(v.name.length > 80 ? `${v.name.slice(0, 80)}...` : v.name, () => {
      expect(verdict(decodeGeneral, unhex(v.hex))).toBe(expected(v));
      expect(verdict(decodeMessage, unhex(v.hex))).toBe(expected(v));
    });
  }

  test("the cases msgpackr cannot tell apart are exactly the listed ones, and still answered", () => {
    for (const name of Object.keys(MSGPACKR_CANNOT_TELL)) expect(vector(vectors.edge_cases, name).name).toBe(name);
    const differ = vectors.edge_cases
      .filter((v) => verdict(decodeGeneral, unhex(v.hex)) !== expected(v))
      .map((v) => v.name);
    expect(differ.sort()).toEqual(Object.keys(MSGPACKR_CANNOT_TELL).sort());
  });
});

describe("the StateUpdate fast path agrees with the general path", () => {
  test("on every vector: same message where it takes a body, and it takes rmp-serde's own shape", () => {
    const all = Object.values(vectors).filter(Array.isArray).flat() as Vector[];
    let taken = 0;
    for (const v of all) {
      const body = unhex(v.hex);
      const fast = decodeStateUpdate(body);
      if (fast === null) continue;
      taken++;
      expect(normalise(fast)).toEqual(normalise(decodeGeneral(body)));
    }
    for (const v of vectors.instance_to_relay.filter((v) => "StateUpdate" in v.message))
      expect(decodeStateUpdate(unhex(v.hex))).not.toBeNull();
    expect(taken).toBeGreaterThanOrEqual(4);
  });

  test("update_data comes back as a view of the input (no copy) and is forwarded as such", () => {
    const body = encodeMessage({
      type: "StateUpdate",
      source_instance_id: new Uint8Array(16),
      timestamp: 1n,
      update_data: toByteArrayWire(Uint8Array.of(1, 2, 200)),
    });
    const msg = decodeMessage(body) as Extract<Message, { type: "StateUpdate" }>;
    expect(msg.update_data.buffer).toBe(body.buffer);
    expect([...byteArrayValues(msg.update_data)]).toEqual([1, 2, 200]);
  });

  test("non-canonical byte arrays take the general path and come out as rmp-serde writes them", () => {
    // array16 header for 3 elements, 5 as uint8, 200 as uint16, 7 as int8
    const body = unhex(
      `81ab537461746555706461746583b2736f757263655f696e7374616e63655f6964c410` +
        "00".repeat(16) +
        `a974696d657374616d7001ab7570646174655f64617461dc0003cc05cd00c8d007`,
    );
    expect(decodeStateUpdate(body)).toBeNull();
    const msg = decodeMessage(body) as Extract<Message, { type: "StateUpdate" }>;
    expect(hex(msg.update_data)).toBe("9305ccc807");
  });
});

describe("frames the relay keeps", () => {
  test("are copies that pin no shared buffer, even after a large frame grew msgpackr's", () => {
    const big = encodeBroadcastFrame(broadcastPrefix("big"), 1n, toByteArrayWire(new Uint8Array(800_000).fill(200)));
    expect(big.length).toBeGreaterThan(1_600_000);
    const kept = Array.from({ length: 50 }, (_, i) => encodeFrame({ type: "Pong", timestamp: BigInt(i) }));
    const prefix = broadcastPrefix("small");
    kept.push(
      ...Array.from({ length: 50 }, (_, i) =>
        encodeBroadcastFrame(prefix, BigInt(i), toByteArrayWire(Uint8Array.of(i))),
      ),
    );
    for (const [i, frame] of kept.entries()) {
      expect(frame.buffer.byteLength).toBe(frame.length);
      const msg = decodeMessage(frame.subarray(4));
      expect(msg).toMatchObject(
        i < 50 ? { type: "Pong", timestamp: BigInt(i) } : { type: "StateBroadcast", timestamp: BigInt(i - 50) },
      );
    }
    expect(kept.reduce((sum, f) => sum + f.buffer.byteLength, 0)).toBeLessThan(5000);
  });

  test("lone surrogates go out as U+FFFD, valid UTF-8 that rmp-serde reads", () => {
    for (const name of ["a\ud800b", "\udc00", `${"x".repeat(70)}\ud83d`]) {
      const body = encodeMessage({
        type: "InstanceDisconnected",
        instance_id: new Uint8Array(16),
        instance_name: name,
      });
      const decoded = decodeMessage(body) as Extract<Message, { type: "InstanceDisconnected" }>;
      expect(decoded.instance_name).toBe(name.toWellFormed());
      expect(hex(body)).toContain("efbfbd");
      const frame = encodeBroadcastFrame(broadcastPrefix(name), 1n, toByteArrayWire(new Uint8Array(0)));
      expect(hex(frame)).toContain("efbfbd");
    }
  });
});

describe("u64 and UUIDs", () => {
  test("u64 survives exactly at every encoding boundary up to 2^64-1, in the smallest unsigned form", () => {
    const forms: Array<[bigint, string]> = [
      [0n, "00"],
      [127n, "7f"],
      [128n, "cc80"],
      [255n, "ccff"],
      [256n, "cd0100"],
      [65535n, "cdffff"],
      [65536n, "ce00010000"],
      [2n ** 32n - 1n, "ceffffffff"],
      [2n ** 32n, "cf0000000100000000"],
      [2n ** 53n + 1n, "cf0020000000000001"],
      [2n ** 64n - 1n, "cfffffffffffffffff"],
    ];
    for (const [t, form] of forms) {
      const body = encodeMessage({ type: "Ping", timestamp: t });
      expect(hex(body)).toBe(`81a450696e6781a974696d657374616d70${form}`);
      expect(decodeMessage(body)).toMatchObject({ type: "Ping", timestamp: t });
    }
  });

  test("UUIDs go out as bin 16 and come back as their canonical text", () => {
    const id = parseUuid("9f1c2a7e-5b3d-4e8f-a1c2-3d4e5f607182");
    expect(stringifyUuid(id)).toBe("9f1c2a7e-5b3d-4e8f-a1c2-3d4e5f607182");
    const body = encodeMessage({ type: "InstanceDisconnected", instance_id: id, instance_name: "bob" });
    expect(hex(body)).toContain("c4109f1c2a7e");
  });
});

/** Byte views compare by content. */
function normalise(msg: Message): unknown {
  return JSON.parse(
    JSON.stringify(msg, (_k, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? hex(v) : v)),
  );
}

function withoutExtensions(msg: Message): Message {
  return msg.type === "RegisterInstance" ? { ...msg, capabilities: [] } : msg;
}

describe("RegistrationResponse built from cached InstanceInfo heads", () => {
  test("is byte-identical to the generic encoding (and so to rmp-serde's)", () => {
    const make = (i: number) => {
      const ms = 1705314615000 + i * 1237;
      const info = {
        id: parseUuid(`123e4567-e89b-42d3-a456-4266141740${String(i).padStart(2, "0")}`),
        name: `inst-${i}-${"é".repeat(i)}`,
        version: "0.1.0",
        connected_at: systemTimeFromMillis(ms - 5000),
      };
      return {
        info: { ...info, last_activity: systemTimeFromMillis(ms) },
        known: { infoHead: instanceInfoHead(info), lastActivity: ms },
      };
    };
    for (const count of [0, 1, 2, 15, 16, 40]) {
      const all = Array.from({ length: count }, (_, i) => make(i));
      const id = parseUuid("00000000-0000-4000-8000-000000000001");
      const fast = encodeRegistrationFrameWithEntries(
        "Registered as carol",
        id,
        count,
        instanceEntries(all.map((a) => a.known)),
      );
      const generic = encodeFrame({
        type: "RegistrationResponse",
        success: true,
        message: "Registered as carol",
        assigned_id: id,
        current_instances: all.map((a) => a.info),
      });
      expect(hex(fast)).toBe(hex(generic));
      expect(normalise(decodeMessage(fast.subarray(4)))).toEqual(
        normalise({
          type: "RegistrationResponse",
          success: true,
          message: "Registered as carol",
          assigned_id: id,
          current_instances: all.map((a) => a.info),
        }),
      );
    }
  });
});
