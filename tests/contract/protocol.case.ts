/**
 * The relay's contract (docs/protocol.md, "Framing" to "Extensions"), run over real sockets against any way of
 * starting the relay: in-process source, the source as a process, the compiled
 * binary. Each `*.test.ts` that imports this passes its own `start`.
 */
import { parse as parseUuid, stringify as stringifyUuid } from "uuid";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { updateValues } from "../../src/client/client.ts";
import { frameOf } from "../../src/protocol/framing.ts";
import { encodeMessage, toByteArrayWire } from "../../src/protocol/messages.ts";
import { connectSleeper, drained, drainedPastRateLimit, isNudge, registerFrame } from "../support/peers.ts";
import { ClientPool, type RelayHandle, type StartRelay } from "../support/relay.ts";
import { hex, loadVectors, unhex, vector } from "../support/vectors.ts";

const vectors = loadVectors();
const VERSION = "0.1.0";

/**
 * A relay started once per describe block, with that block's flags. Nudges (Pongs
 * to quiet instances) are off unless a block turns them on: the other blocks show
 * that nothing arrives, and a nudge would be something.
 */
function withRelay(start: StartRelay, flags: string[] = [], env: Record<string, string> = {}) {
  let relay: RelayHandle;
  const pool = new ClientPool(() => relay.port);
  beforeAll(async () => {
    relay = await start(flags.includes("--nudge-interval") ? flags : ["--nudge-interval", "0", ...flags], env);
  });
  afterEach(() => pool.closeAll());
  afterAll(async () => {
    pool.closeAll();
    await relay.stop();
  });
  return { pool, relay: () => relay };
}

export function protocolSuite(label: string, start: StartRelay): void {
  describe(`${label}: connection flow`, () => {
    const { pool, relay } = withRelay(start, ["--handshake-timeout", "0.5"]);

    test("1. no RegisterInstance within the handshake timeout: the connection is closed", async () => {
      const c = await pool.connect();
      await c.closed;
      expect(c.isClosed).toBe(true);
      await relay().waitForEvent("handshake_timeout");
    });

    test("2. anything else first gets 'Expected RegisterInstance message', then close", async () => {
      const c = await pool.connect();
      c.send({ type: "Ping", timestamp: 1n });
      expect((await c.next("Error")).message).toBe("Expected RegisterInstance message");
      await c.closed;
    });

    test("2. an undecodable first frame is refused the same way", async () => {
      const c = await pool.connect();
      c.sendRaw(frameOf(unhex("920102")));
      expect((await c.next("Error")).message).toBe("Expected RegisterInstance message");
      await c.closed;
    });

    test("3. a name that is empty, too long or holds control characters is refused", async () => {
      for (const name of ["", "x".repeat(65), "tab\there", "nl\n", "del\u007f"]) {
        const c = await pool.connect();
        await expect(c.register({ name })).rejects.toThrow("Invalid instance name");
        await c.closed;
      }
      // 64 characters is fine, counted as characters, not bytes.
      const ok = await pool.register("é".repeat(64));
      expect(ok.id).not.toBeNull();
    });

    test("3. invisible, direction-control, whitespace-only and mixed-script look-alike names are refused", async () => {
      const names = [
        "alice\u200b", // zero-width space
        "\u202eevil", // right-to-left override
        "line\u2028sep",
        "para\u2029sep",
        "   ",
        "\u2800", // braille blank
        "\u0430lice", // Cyrillic a, Latin lice
        "\u03bfscar", // Greek omicron, Latin scar
      ];
      for (const name of names) {
        const c = await pool.connect();
        await expect(c.register({ name })).rejects.toThrow("Invalid instance name");
        await c.closed;
      }
      // One script throughout is a name like any other.
      expect((await pool.register("\u0430\u043b\u0438\u0441\u0430")).id).not.toBeNull();
    });

    test("3. names that differ only by surrounding whitespace or Unicode normalisation are the same name", async () => {
      await pool.register("caf\u00e9"); // NFC
      for (const name of ["cafe\u0301", " caf\u00e9", "caf\u00e9\u00a0"]) {
        const c = await pool.connect();
        await expect(c.register({ name })).rejects.toThrow(`Instance name '${name}' already in use`);
        await c.closed;
      }
    });

    test("3. a name in use in the session is refused; free again at once when its owner leaves", async () => {
      const first = await pool.register("alice");
      const second = await pool.connect();
      await expect(second.register({ name: "alice" })).rejects.toThrow("Instance name 'alice' already in use");
      await second.closed;
      first.close();
      await first.closed;
      // Step 7: "the name is free again at once". Wait on the relay's own log of the leave.
      await relay().waitForEvent("disconnected", { instance: "alice" });
      const again = await pool.register("alice");
      expect(again.id).not.toBeNull();
    });

    test("4. RegistrationResponse: success, message, a v4 UUID, and the others of the session", async () => {
      const a = await pool.connect();
      const ra = await a.register({ name: "ann" });
      expect(ra).toMatchObject({ success: true, message: "Registered as ann", current_instances: [] });
      expect(stringifyUuid(ra.assigned_id!)).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      const b = await pool.connect();
      const before = Date.now();
      const rb = await b.register({ name: "ben" });
      expect(rb.current_instances.map((i) => i.name)).toEqual(["ann"]);
      const ann = rb.current_instances[0]!;
      expect(hex(ann.id)).toBe(hex(ra.assigned_id!));
      expect(ann.version).toBe(VERSION);
      const secs = Number(ann.connected_at.secs_since_epoch);
      expect(Math.abs(secs - before / 1000)).toBeLessThan(10);
      expect(ann.connected_at.nanos_since_epoch).toBeLessThan(1e9);
    });

    test("5. a StateUpdate reaches every other instance as a StateBroadcast, never the sender, in order", async () => {
      const a = await pool.register("s1");
      const b = await pool.register("s2");
      const c = await pool.register("s3");
      for (let i = 0; i < 50; i++) a.sendUpdate(Uint8Array.of(i, 255 - i), BigInt(1000 + i));
      for (const r of [b, c]) {
        for (let i = 0; i < 50; i++) {
          const m = await r.next("StateBroadcast");
          expect(m.source_instance_name).toBe("s1");
          expect(m.timestamp).toBe(BigInt(1000 + i));
          expect([...updateValues(m)]).toEqual([i, 255 - i]);
        }
      }
      // The sender hears nothing back: its ping answer is the next thing it gets.
      expect(await drained(a)).toEqual([]);
      for (const r of [a, b, c]) expect(r.decodeErrors).toEqual([]);
    });

    test("5. the broadcast's bytes are rmp-serde's, byte for byte (vector state_broadcast_set_script)", async () => {
      const expected = vector(vectors.relay_to_instance, "state_broadcast_set_script");
      const sent = vector(vectors.instance_to_relay, "state_update_set_script");
      const alice = await pool.register("alice");
      const bob = await pool.register("bob");
      const raw: string[] = [];
      bob.onFrame((body) => raw.push(hex(body)));
      // The vector's StateUpdate carries another id: put alice's in, keep every other byte.
      const body = unhex(sent.hex);
      const idAt = hex(body).indexOf("c410123e4567") / 2 + 2;
      body.set(alice.id!, idAt);
      alice.sendRaw(frameOf(body));
      await bob.next("StateBroadcast");
      expect(raw).toEqual([expected.hex]);
    });

    test("5. u64 timestamps pass through exactly, up to 2^64-1; 70000-byte updates intact", async () => {
      const a = await pool.register("big-a");
      const b = await pool.register("big-b");
      const payload = unhex(
        JSON.parse(JSON.stringify(vector(vectors.instance_to_relay, "state_update_70000_bytes").message)).StateUpdate
          .update_data_hex,
      );
      a.sendUpdate(payload, 2n ** 64n - 1n);
      a.sendUpdate(Uint8Array.of(1), 2n ** 32n);
      const m1 = await b.next("StateBroadcast");
      expect(m1.timestamp).toBe(2n ** 64n - 1n);
      expect(hex(updateValues(m1))).toBe(hex(payload));
      expect((await b.next("StateBroadcast")).timestamp).toBe(2n ** 32n);
    });

    test(`5. other encodings from an instance (map16, int64, fields reordered) are relayed \
in rmp-serde's form`, async () => {
      const a = await pool.register("enc-a");
      const b = await pool.register("enc-b");
      const raw: string[] = [];
      b.onFrame((body) => raw.push(hex(body)));
      const v = vector(vectors.accepted_other_encodings, "state_update_map16_int64_timestamp");
      const body = unhex(v.hex);
      body.set(a.id!, hex(body).indexOf("c410123e4567") / 2 + 2);
      a.sendRaw(frameOf(body));
      const m = await b.next("StateBroadcast");
      expect(m.timestamp).toBe(1705314615000n);
      expect(raw[0]).toBe(
        hex(
          encodeMessage({
            type: "StateBroadcast",
            source_instance_name: "enc-a",
            timestamp: 1705314615000n,
            update_data: toByteArrayWire(unhex("0102c8")),
          }),
        ),
      );
    });

    test(`5. a wrong source_instance_id gets 'Instance ID mismatch', is dropped, \
and the connection stays`, async () => {
      const a = await pool.register("liar");
      const b = await pool.register("victim");
      a.send({
        type: "StateUpdate",
        source_instance_id: parseUuid("123e4567-e89b-12d3-a456-426614174000"),
        timestamp: 1n,
        update_data: toByteArrayWire(Uint8Array.of(1)),
      });
      expect((await a.next("Error")).message).toBe("Instance ID mismatch");
      a.sendUpdate(Uint8Array.of(2), 2n);
      const m = await b.next("StateBroadcast");
      expect(m.timestamp).toBe(2n); // the forged one never arrived
    });

    test("6. Ping gets Pong with the same value, before and after registration order aside", async () => {
      const a = await pool.register("pinger");
      expect(await a.ping(2n ** 64n - 1n)).toBe(2n ** 64n - 1n);
      expect(await a.ping(0n)).toBe(0n);
      const raw: string[] = [];
      a.onFrame((b) => raw.push(hex(b)));
      await a.ping(1705314615000n);
      expect(raw).toEqual([vector(vectors.relay_to_instance, "pong").hex]);
    });

    test("7. a leaving instance is announced once to the rest of its session, with its id and name", async () => {
      const a = await pool.register("stay1");
      const b = await pool.register("stay2");
      const leaver = await pool.register("leaver");
      const leaverId = hex(leaver.id!);
      leaver.close();
      for (const r of [a, b]) {
        const m = await r.next("InstanceDisconnected");
        expect(m.instance_name).toBe("leaver");
        expect(hex(m.instance_id)).toBe(leaverId);
      }
      // Once: a ping round trip later there is no second notice.
      expect(await drained(a)).toEqual([]);
    });

    test("7. an instance that disconnects mid-frame is removed and announced; the relay keeps serving", async () => {
      const a = await pool.register("watcher");
      const half = await pool.register("halfway");
      const frame = frameOf(
        encodeMessage({
          type: "StateUpdate",
          source_instance_id: half.id!,
          timestamp: 1n,
          update_data: toByteArrayWire(new Uint8Array(5000)),
        }),
      );
      half.sendRaw(frame.subarray(0, 2500));
      half.close();
      expect((await a.next("InstanceDisconnected")).instance_name).toBe("halfway");
      expect(await drained(a)).toEqual([]);
    });

    test(`8. an undecodable message after registration gets 'Invalid message: ...' and \
the connection stays`, async () => {
      const a = await pool.register("sloppy");
      for (const v of vectors.rejected_by_rmp_serde.filter((x) => x.hex !== "")) {
        a.sendRaw(frameOf(unhex(v.hex)));
        const err = await a.next("Error");
        expect(err.message.startsWith("Invalid message: ")).toBe(true);
      }
      a.send({
        type: "RegisterInstance",
        instance_name: "again",
        version: VERSION,
        session_token: null,
        capabilities: [],
      });
      expect((await a.next("Error")).message).toBe("Invalid message: unexpected RegisterInstance from an instance");
      expect(await a.ping(3n)).toBe(3n);
    });

    test("framing: an empty frame gets 'Invalid message: empty frame' and the connection stays", async () => {
      const a = await pool.register("empty");
      a.sendRaw(new Uint8Array(4));
      expect((await a.next("Error")).message).toBe("Invalid message: empty frame");
      expect(await a.ping(4n)).toBe(4n);
    });

    test("frames split into single bytes and frames coalesced into one write both arrive", async () => {
      const a = await pool.register("splitter");
      const b = await pool.register("joined");
      const frames = Array.from({ length: 20 }, (_, i) =>
        frameOf(
          encodeMessage({
            type: "StateUpdate",
            source_instance_id: a.id!,
            timestamp: BigInt(i),
            update_data: toByteArrayWire(Uint8Array.of(i)),
          }),
        ),
      );
      const stream = Buffer.concat(frames);
      a.sendRaw(stream.subarray(0, 40)); // half a frame or so
      for (const byte of stream.subarray(40, 80)) a.sendRaw(Uint8Array.of(byte));
      a.sendRaw(stream.subarray(80)); // the rest, many frames in one write
      for (let i = 0; i < 20; i++) expect((await b.next("StateBroadcast")).timestamp).toBe(BigInt(i));
    });

    test("presence: only an instance that asked receives InstanceConnected; the others never see it", async () => {
      const plain = await pool.register("plain");
      const watcher = await pool.register("watcher2", { capabilities: ["presence"] });
      await pool.register("newcomer");
      const seen = await watcher.next("InstanceConnected");
      expect(seen.instance_name).toBe("newcomer");
      await plain.ping(1n);
      expect(plain.decodeErrors).toEqual([]);
      expect(plain.decodeErrors.some((e) => e.includes("InstanceConnected"))).toBe(false);
    });
  });

  describe(`${label}: registration checks, in the order of docs/protocol.md, "Connection flow" 3`, () => {
    const { pool } = withRelay(start, [
      "--token",
      "ensemble-one-Tk4Zq",
      "--token",
      "ensemble-two-Tk4Zq",
      "--max-instances",
      "2",
    ]);

    test("version first, then token, then capacity, then name", async () => {
      const c1 = await pool.connect();
      // Wrong version and wrong token: the version is what is reported.
      await expect(c1.register({ name: "a", version: "0.0.9", token: "nope" })).rejects.toThrow(
        "Version mismatch: expected 0.1.0, got 0.0.9",
      );
      const c2 = await pool.connect();
      await expect(c2.register({ name: "", token: "nope" })).rejects.toThrow("Invalid session token");
      const c3 = await pool.connect();
      await expect(c3.register({ name: "x", token: null })).rejects.toThrow("Invalid session token");
      await pool.register("one", { token: "ensemble-one-Tk4Zq" });
      await pool.register("two", { token: "ensemble-two-Tk4Zq" });
      const c4 = await pool.connect();
      // Full, and an invalid name: capacity is reported.
      await expect(c4.register({ name: "", token: "ensemble-one-Tk4Zq" })).rejects.toThrow(
        "Maximum instances (2) reached",
      );
      await c4.closed;
    });

    test("the error frames are rmp-serde's bytes (vectors error_version_mismatch, error_max_instances)", async () => {
      const c = await pool.connect();
      const raw: string[] = [];
      c.onFrame((b) => raw.push(hex(b)));
      c.sendRaw(registerFrame("v", { version: "0.0.9" }));
      await c.next("Error");
      expect(raw).toEqual([vector(vectors.relay_to_instance, "error_version_mismatch").hex]);
    });
  });

  describe(`${label}: sessions`, () => {
    const { pool } = withRelay(start, ["--token", "room-a-token-Pw8Xv", "--token", "room-b-token-Pw8Xv"]);

    test("each token is its own session: instances see and hear only their own", async () => {
      const a1 = await pool.register("a1", { token: "room-a-token-Pw8Xv" });
      const b1 = await pool.register("b1", { token: "room-b-token-Pw8Xv" });
      const a2 = await pool.connect();
      const r = await a2.register({ name: "a2", token: "room-a-token-Pw8Xv" });
      expect(r.current_instances.map((i) => i.name)).toEqual(["a1"]);
      // Names are unique per session only.
      const b2 = await pool.register("a1", { token: "room-b-token-Pw8Xv" });
      a1.sendUpdate(Uint8Array.of(7), 7n);
      expect((await a2.next("StateBroadcast")).timestamp).toBe(7n);
      expect(await drained(b1, b2)).toEqual([]);
      a2.close();
      expect((await a1.next("InstanceDisconnected")).instance_name).toBe("a2");
      expect(await drained(b1)).toEqual([]);
    });
  });

  describe(`${label}: limits`, () => {
    const { pool, relay } = withRelay(start, [
      "--rate-limit",
      "5",
      "--max-message-size",
      "4096",
      "--max-pending-bytes",
      "262144",
      "--idle-timeout",
      "1",
      "--nudge-interval",
      "20",
    ]);

    test("rate limit: messages past the limit are dropped, with one Error per window", async () => {
      const a = await pool.register("fast");
      for (let i = 0; i < 12; i++) a.send({ type: "Ping", timestamp: BigInt(i) });
      const err = await a.next("Error");
      expect(err.message).toBe("Rate limit exceeded for instance fast");
      const raw: string[] = [];
      // Five pongs came back (0..4), no more, and no second Error.
      for (let i = 0; i < 5; i++)
        expect((await a.next("Pong", { where: (m) => !isNudge(m) })).timestamp).toBe(BigInt(i));
      a.onFrame((b) => raw.push(hex(b)));
      a.send({ type: "Ping", timestamp: 99n });
      await relay().waitForEvent("rate_limited");
      // Its pings are dropped too: a nudge, which comes only once nothing else is queued, ends the wait.
      expect(await drainedPastRateLimit(a)).toEqual([]);
      expect(raw).toHaveLength(1); // the nudge that ends the round trip, and nothing else
    });

    test("message too large: skipped, Error with the sizes, connection kept", async () => {
      const a = await pool.register("huge");
      const body = new Uint8Array(10_000);
      a.sendRaw(frameOf(body));
      expect((await a.next("Error")).message).toBe("Message too large: 10000 bytes (max: 4096)");
      expect(await a.ping(1n)).toBe(1n);
    });

    test("idle timeout: a silent registered instance is closed and the others are told", async () => {
      const talker = await pool.register("talker");
      const quiet = await pool.register("quiet");
      const keepTalking = setInterval(() => talker.send({ type: "Pong", timestamp: 0n }), 100);
      try {
        await quiet.closed;
        expect((await talker.next("InstanceDisconnected")).instance_name).toBe("quiet");
      } finally {
        clearInterval(keepTalking);
      }
    });
  });

  describe(`${label}: a recipient that never reads`, () => {
    const { pool, relay } = withRelay(start, ["--max-pending-bytes", "1048576", "--rate-limit", "0"]);

    test("is cut as a slow consumer while the others keep receiving everything", async () => {
      const sender = await pool.register("sender", { capabilities: ["presence"] });
      const reader = await pool.register("reader");
      const sleeper = await connectSleeper(relay().port);
      await sender.next("InstanceConnected", { where: (m) => m.instance_name === "sleeper" });
      const payload = new Uint8Array(500_000).fill(0x42);
      const count = 60; // 30 MB: far past what the kernel buffers for the sleeper
      // Paced by the reader, as a player's edits are: the reader keeps up, the sleeper does not.
      for (let i = 0; i < count; i++) {
        sender.sendUpdate(payload, BigInt(i));
        const m = await reader.next("StateBroadcast", { timeoutMs: 15000 });
        expect(m.timestamp).toBe(BigInt(i));
      }
      expect((await reader.next("InstanceDisconnected", { timeoutMs: 15000 })).instance_name).toBe("sleeper");
      const unsent = (await relay().waitForEvent("slow_consumer", { instance: "sleeper" })).pending_bytes as number;
      expect(unsent).toBeLessThanOrEqual(1048576);
      sleeper.terminate();
    }, 30000);
  });
}
