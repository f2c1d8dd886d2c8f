/**
 * Property tests (fast-check): the frame reader and the codec never throw out
 * of their handlers, never hold more than one maximum frame, and always either
 * decode a message or refuse it with a decode error; a relay under a fuzzing
 * client keeps serving everyone else. FUZZ_RUNS scales the number of cases
 * (`bun run fuzz` runs many more than CI does).
 */
import { parse as parseUuid } from "uuid";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { connect } from "../../src/client/client.ts";
import { isRelayError } from "../../src/lib/errors.ts";
import { createFrameReader, frameOf } from "../../src/protocol/framing.ts";
import {
  decodeGeneral,
  decodeMessage,
  decodeStateUpdate,
  encodeMessage,
  toByteArrayWire,
  type Message,
} from "../../src/protocol/messages.ts";
import { startInProcess, type RelayHandle } from "../support/relay.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
export const fuzzCounts: Record<string, number> = {};

function runs(name: string, n = RUNS): { numRuns: number } {
  fuzzCounts[name] = n;
  return { numRuns: n };
}

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const uuid = fc.uint8Array({ minLength: 16, maxLength: 16 });
const name = fc.string({ minLength: 0, maxLength: 80, unit: "grapheme" });
const bytes = fc.uint8Array({ maxLength: 2000 });

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant("RegisterInstance" as const),
    instance_name: name,
    version: fc.string(),
    session_token: fc.option(fc.string(), { nil: null }),
    capabilities: fc.array(fc.string(), { maxLength: 3 }),
  }),
  fc.record({
    type: fc.constant("StateUpdate" as const),
    source_instance_id: uuid,
    timestamp: u64,
    update_data: bytes.map(toByteArrayWire),
  }),
  fc.record({
    type: fc.constant("StateBroadcast" as const),
    source_instance_name: name,
    timestamp: u64,
    update_data: bytes.map(toByteArrayWire),
  }),
  fc.record({ type: fc.constant("InstanceDisconnected" as const), instance_id: uuid, instance_name: name }),
  fc.record({ type: fc.constant("Ping" as const), timestamp: u64 }),
  fc.record({ type: fc.constant("Pong" as const), timestamp: u64 }),
  fc.record({ type: fc.constant("Error" as const), message: fc.string() }),
);

/** Decoding either gives a message or a decode error: nothing else may escape. */
function decodeOrRefuse(body: Uint8Array): "ok" | "refused" {
  try {
    decodeMessage(body, { extensions: true });
    return "ok";
  } catch (error) {
    if (!isRelayError(error, "E_DECODE")) throw error;
    return "refused";
  }
}

/** Cuts a stream into pieces at the given (sorted, deduplicated) points. */
function cut(stream: Uint8Array, points: number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => p % (stream.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...at, stream.length]) {
    pieces.push(stream.subarray(prev, p));
    prev = p;
  }
  return pieces;
}

describe("codec under fuzz", () => {
  test("random bytes: a message or a decode error, never a crash", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => void decodeOrRefuse(b)),
      runs("random bytes"),
    );
  });

  test("valid messages round-trip exactly", () => {
    fc.assert(
      fc.property(message, (m) => {
        const body = encodeMessage(m);
        expect(Buffer.from(encodeMessage(decodeMessage(body, { extensions: true }))).equals(Buffer.from(body))).toBe(
          true,
        );
      }),
      runs("round trip"),
    );
  });

  test("mutated valid frames: flipped bits, truncation, inserted and deleted bytes", () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(message, fc.array(mutation, { minLength: 1, maxLength: 4 }), (m, mutations) => {
        let body = Array.from(encodeMessage(m));
        for (const mu of mutations) {
          const at = body.length === 0 ? 0 : mu.at % body.length;
          if (mu.kind === "flip" && body.length > 0) body[at] = body[at]! ^ (1 << mu.bit);
          else if (mu.kind === "truncate") body = body.slice(0, at);
          else if (mu.kind === "insert") body.splice(at, 0, mu.byte);
          else if (mu.kind === "delete") body.splice(at, 1);
        }
        decodeOrRefuse(Uint8Array.from(body));
      }),
      runs("mutations", RUNS * 3),
    );
  });

  test("hostile shapes: deep nesting, huge headers with little data, strings that are not UTF-8", () => {
    const deep = new Uint8Array(100_000).fill(0x91); // an array in an array in ... 100,000 deep
    expect(decodeOrRefuse(Uint8Array.of(0x81, 0xa4, ...Buffer.from("Ping"), 0x82, 0xa1, 0x78, ...deep))).toBe(
      "refused",
    );
    expect(decodeOrRefuse(Uint8Array.of(0x81, 0xa4, ...Buffer.from("Ping"), 0xdf, 0xff, 0xff, 0xff, 0xff))).toBe(
      "refused",
    );
    const hugeArray = Uint8Array.of(
      0x81,
      0xab,
      ...Buffer.from("StateUpdate"),
      0x83,
      0xab,
      ...Buffer.from("update_data"),
      0xdd,
      0xff,
      0xff,
      0xff,
      0xff,
      1,
      2,
    );
    expect(decodeOrRefuse(hugeArray)).toBe("refused");
    // rmp-serde refuses this; msgpackr reads it as U+FFFD (tests/unit/protocol/vectors.test.ts lists why), never as a crash.
    const badUtf8 = Uint8Array.of(
      0x81,
      0xa5,
      ...Buffer.from("Error"),
      0x81,
      0xa7,
      ...Buffer.from("message"),
      0xa2,
      0xc3,
      0x28,
    );
    expect(decodeMessage(badUtf8)).toEqual({ type: "Error", message: "\ufffd(" });
    const badUtf8Bin = Uint8Array.of(
      0x81,
      0xa5,
      ...Buffer.from("Error"),
      0x81,
      0xa7,
      ...Buffer.from("message"),
      0xc4,
      0x02,
      0xc3,
      0x28,
    );
    expect(() => decodeMessage(badUtf8Bin)).toThrow("invalid value: byte array, expected a string");
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 20 }), (n, tail) => {
        const header = Uint8Array.of(0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
        const body = Uint8Array.of(
          0x81,
          0xab,
          ...Buffer.from("StateUpdate"),
          0x81,
          0xab,
          ...Buffer.from("update_data"),
          ...header,
          ...tail,
        );
        decodeOrRefuse(body);
      }),
      runs("huge headers"),
    );
  });
});

/** The outcome of a decoder on a body, comparable across decoders. */
function outcome(decode: (b: Uint8Array) => Message | null, body: Uint8Array): string | null {
  try {
    const m = decode(body);
    return m === null
      ? null
      : JSON.stringify(m, (_k, v) =>
          typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v,
        );
  } catch (error) {
    if (!isRelayError(error, "E_DECODE")) throw error;
    return `refused: ${(error as Error).message}`;
  }
}

describe("the StateUpdate fast path against the general path (msgpackr)", () => {
  const update = fc.record({
    type: fc.constant("StateUpdate" as const),
    source_instance_id: uuid,
    timestamp: fc.oneof(u64, fc.bigInt({ min: 0n, max: 70000n })),
    update_data: fc.uint8Array({ maxLength: 300 }).map(toByteArrayWire),
  });
  /** Fields in any order, and map headers as rmp-serde (fixmap) or msgpackr's defaults (map16) write them. */
  const reordered = fc
    .tuple(update, fc.constantFrom([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]), fc.boolean())
    .map(([m, order, map16]) => {
      const body = Buffer.from(encodeMessage(m));
      const head = 1 + 12 + 1; // fixmap, "StateUpdate", fixmap 3
      const keys = [1 + 18, 1 + 9, 1 + 11]; // key lengths of source_instance_id, timestamp, update_data
      const parts: Buffer[] = [];
      let at = head;
      for (let i = 0; i < 3; i++) {
        const next =
          i < 2 ? body.indexOf(i === 0 ? "\xa9timestamp" : "\xabupdate_data", at + keys[i]!, "latin1") : body.length;
        parts.push(body.subarray(at, next));
        at = next;
      }
      const start = map16
        ? [Buffer.of(0xde, 0, 1), body.subarray(1, head - 1), Buffer.of(0xde, 0, 3)]
        : [body.subarray(0, head)];
      return Uint8Array.from(Buffer.concat([...start, ...order.map((i) => parts[i]!)]));
    });
  const mutation = fc.record({
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
    kind: fc.constantFrom("set", "insert", "delete", "truncate"),
  });

  test(`every rmp-serde-shaped StateUpdate, fields in any order, \
takes the fast path with the general path's result`, () => {
    fc.assert(
      fc.property(reordered, (body) => {
        const fast = outcome(decodeStateUpdate, body);
        expect(fast).not.toBeNull();
        expect(fast).toBe(outcome(decodeGeneral, body));
      }),
      runs("fast path: shaped bodies", Math.max(RUNS, 2000)),
    );
  });

  test("mutated bodies: where the fast path takes one, the general path decodes the same message", () => {
    fc.assert(
      fc.property(reordered, fc.array(mutation, { minLength: 1, maxLength: 3 }), (shaped, mutations) => {
        const body = Array.from(shaped);
        for (const mu of mutations) {
          const at = mu.at % (body.length + 1);
          if (mu.kind === "set" && at < body.length) body[at] = mu.byte;
          else if (mu.kind === "insert") body.splice(at, 0, mu.byte);
          else if (mu.kind === "delete") body.splice(at, 1);
          else if (mu.kind === "truncate") body.length = at;
        }
        const bytes = Uint8Array.from(body);
        const fast = outcome(decodeStateUpdate, bytes);
        if (fast !== null) expect<string | null>(fast).toBe(outcome(decodeGeneral, bytes));
        else outcome(decodeGeneral, bytes); // refused or decoded, never a crash
      }),
      runs("fast path: mutated bodies", Math.max(RUNS * 3, 3000)),
    );
  });
});

describe("frame reader under fuzz", () => {
  test("random streams cut anywhere: never throws, never holds more than one maximum frame", () => {
    const max = 512;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4000 }), fc.array(fc.nat(), { maxLength: 30 }), (stream, points) => {
        let held = 0;
        const reader = createFrameReader(max, {
          frame: (b) => {
            expect(b.length).toBeLessThanOrEqual(max);
            decodeOrRefuse(b);
          },
          oversized: () => {},
        });
        for (const piece of cut(stream, points)) {
          reader.push(piece);
          held = Math.max(held, reader.buffered);
        }
        expect(held).toBeLessThanOrEqual(max);
      }),
      runs("random streams"),
    );
  });

  test("valid messages cut at random points come out whole and in order", () => {
    fc.assert(
      fc.property(
        fc.array(message, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (msgs, points) => {
          const bodies = msgs.map(encodeMessage);
          const stream = Buffer.concat(bodies.map(frameOf));
          const out: string[] = [];
          const reader = createFrameReader(1 << 20, {
            frame: (b) => out.push(Buffer.from(b).toString("hex")),
            oversized: () => {},
          });
          for (const piece of cut(stream, points)) reader.push(piece);
          expect(out).toEqual(bodies.map((b) => Buffer.from(b).toString("hex")));
        },
      ),
      runs("cut messages"),
    );
  });
});

describe("a relay under a fuzzing client", () => {
  let relay: RelayHandle;
  beforeAll(async () => {
    relay = await startInProcess(["--rate-limit", "0", "--max-message-size", "65536"]);
  });
  afterAll(() => relay.stop());

  test("keeps relaying for the others while one client sends garbage", async () => {
    const a = await connect({ port: relay.port });
    await a.register({ name: "steady-a" });
    const b = await connect({ port: relay.port });
    await b.register({ name: "steady-b" });
    const id = parseUuid("123e4567-e89b-12d3-a456-426614174000");
    const garbage = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((x) => frameOf(x)),
        message.map((m) => frameOf(encodeMessage(m.type === "StateUpdate" ? { ...m, source_instance_id: id } : m))),
        fc.uint8Array({ maxLength: 64 }), // not even framed
      ),
      { numRuns: RUNS * 2, seed: 42 },
    );
    fuzzCounts["garbage frames to a live relay"] = garbage.length;
    // Registered fuzzers (whose garbage reaches the relay logic) and unregistered ones.
    const registered = await connect({ port: relay.port });
    await registered.register({ name: "fuzzer" });
    const fresh = await connect({ port: relay.port });
    for (const [i, g] of garbage.entries()) {
      registered.sendRaw(g);
      if (i % 7 === 0) fresh.sendRaw(g);
      if (i % 50 === 0) a.sendUpdate(Uint8Array.of(i & 0xff), BigInt(i));
    }
    for (let i = 0; i < garbage.length; i += 50)
      expect((await b.next("StateBroadcast", { where: (m) => m.source_instance_name === "steady-a" })).timestamp).toBe(
        BigInt(i),
      );
    expect(await a.ping(7n)).toBe(7n);
    expect(await b.ping(8n)).toBe(8n);
    expect(b.decodeErrors).toEqual([]);
    for (const c of [a, b, registered, fresh]) c.close();
  }, 30000);
});
