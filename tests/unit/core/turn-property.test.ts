/**
 * A turn's broadcasts (src/core/turn.ts), over many random turn shapes through the real core with the end of the
 * turn in the test's hands: every member gets exactly the others' broadcasts since it joined, in order, with
 * whatever else it is sent (Pongs) in its place; each view holds whole frames of one buffer of at most 64 KiB
 * (or one bigger frame alone); and for every buffer a member's views keep alive, what it was charged for them
 * sums to that buffer's size. Seeded: the same shapes every run.
 */
import { expect, test } from "bun:test";
import { createRelay, type Connection, type RelayOptions } from "../../../src/core/index.ts";
import { silentLogger } from "../../../src/lib/log.ts";
import { decodeMessage, encodeMessage, toByteArrayWire } from "../../../src/protocol/messages.ts";
import { CORE_OPTIONS, manualClock, peer, type TestPeer } from "../../support/fake-peer.ts";
import { registerBody } from "../../support/peers.ts";

const VIEW_BYTES = 64 * 1024;
const SESSIONS = ["s0", "s1"];

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Sent {
  frame: Uint8Array;
  front: boolean;
  own: boolean;
  cost: number;
}

interface Member {
  name: string;
  session: string;
  resumer: boolean;
  conn: Connection;
  peer: TestPeer;
  sent: Sent[];
  /** What it is to get, as `sender:timestamp` and `Pong:timestamp`. */
  expected: string[];
  /** Left (closed) or refusing: no more expectations checked past what it got. */
  gone: boolean;
  refused: boolean;
}

const OPTIONS: Partial<RelayOptions> = {
  tokens: SESSIONS,
  maxInstances: 1000,
  rateLimit: 1_000_000,
  maxMessageSize: 1 << 20,
  nudgeIntervalMs: 40,
  resumeWindowMs: 30_000,
  sessionSecret: new Uint8Array(32).fill(7),
};

function setup() {
  const ends: Array<() => void> = [];
  const clock = manualClock();
  const relay = createRelay({ ...CORE_OPTIONS, ...OPTIONS, clock, endOfTurn: (fn) => ends.push(fn) }, silentLogger);
  let names = 0;
  const members: Member[] = [];
  function join(session: string, resumer: boolean): Member {
    const p = peer();
    const sent: Sent[] = [];
    p.send = (frame, front = false, own = false, cost = frame.length) => {
      if (p.refuse) return false;
      sent.push({ frame, front, own, cost });
      return true;
    };
    // Two characters: every broadcast's prefix has one length, so a frame's size is the test's to choose.
    const name = `${String.fromCharCode(97 + Math.floor(names / 26))}${String.fromCharCode(97 + (names % 26))}`;
    names++;
    const conn = relay.open(p);
    relay.receive(conn, registerBody(name, { session_token: session, capabilities: resumer ? ["resume"] : [] }));
    expect(conn.state).toBe("registered");
    const m: Member = { name, session, resumer, conn, peer: p, sent, expected: [], gone: false, refused: false };
    members.push(m);
    return m;
  }
  function update(m: Member, ts: number, bytes: number): void {
    relay.receive(
      m.conn,
      encodeMessage({
        type: "StateUpdate",
        source_instance_id: m.conn.instance!.id,
        timestamp: BigInt(ts),
        update_data: _data(bytes),
      }),
    );
  }
  const endTurn = () => {
    for (const fn of ends.splice(0)) fn();
  };
  return { relay, clock, members, join, update, endTurn };
}

/** update_data of `bytes` values below 128 (one byte each on the wire), made once per size: encoding is slow. */
const _wires = new Map<number, ReturnType<typeof toByteArrayWire>>();

function _data(bytes: number): ReturnType<typeof toByteArrayWire> {
  let wire = _wires.get(bytes);
  if (wire === undefined) {
    wire = toByteArrayWire(new Uint8Array(bytes).fill(1));
    _wires.set(bytes, wire);
  }
  return wire;
}

/** The frames of one live buffer the relay queued, which holds whole frames (only front frames go in parts). */
function _bodies(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.length) {
    const length = view.getUint32(at);
    if (at + 4 + length > bytes.length)
      throw new Error(`a part of a frame: ${length} bytes at ${at} of ${bytes.length}`);
    out.push(bytes.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
}

/**
 * What a member got: broadcasts and the Pongs answering its Pings (nudges, stamped with the clock, left out). Its
 * front frames (the registration response, sent in parts) come first and hold neither.
 */
function got(m: Member): string[] {
  const out: string[] = [];
  for (const x of m.sent)
    if (!x.front)
      for (const body of _bodies(x.frame)) {
        const said = _said(body);
        if (said !== null) out.push(said);
      }
  return out;
}

/** Every recipient gets views of the same buffers: each body is decoded once (a big one's update_data is slow). */
const _decoded = new WeakMap<ArrayBufferLike, Map<number, string | null>>();

function _said(body: Uint8Array): string | null {
  let inBuffer = _decoded.get(body.buffer);
  if (inBuffer === undefined) {
    inBuffer = new Map();
    _decoded.set(body.buffer, inBuffer);
  }
  let said = inBuffer.get(body.byteOffset);
  if (said !== undefined) return said;
  said = _bigBroadcast(body);
  if (said === undefined) {
    const msg = decodeMessage(body, { extensions: true });
    said =
      msg.type === "StateBroadcast"
        ? `${msg.source_instance_name}:${msg.timestamp}`
        : msg.type === "Pong" && msg.timestamp < 1_000_000n
          ? `Pong:${msg.timestamp}`
          : null;
  }
  inBuffer.set(body.byteOffset, said);
  return said;
}

/**
 * A big StateBroadcast's sender and timestamp read from its head, without reading its update_data (decoding a
 * 64 KiB one takes ~2 ms): `{"StateBroadcast": {"source_instance_name": <2 letters>, "timestamp": <uint16>, ...`.
 */
const _ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));
const _HEAD = Uint8Array.of(
  0x81,
  0xae,
  ..._ascii("StateBroadcast"),
  0x83,
  0xb4,
  ..._ascii("source_instance_name"),
  0xa2,
);
const _STAMP = Uint8Array.of(0xa9, ..._ascii("timestamp"), 0xcd);

function _bigBroadcast(body: Uint8Array): string | undefined {
  if (body.length < 1024) return undefined;
  const stampAt = _HEAD.length + 2;
  for (let i = 0; i < _HEAD.length; i++) if (body[i] !== _HEAD[i]) return undefined;
  for (let i = 0; i < _STAMP.length; i++) if (body[stampAt + i] !== _STAMP[i]) return undefined;
  const at = stampAt + _STAMP.length;
  return `${String.fromCharCode(body[_HEAD.length]!, body[_HEAD.length + 1]!)}:${(body[at]! << 8) | body[at + 1]!}`;
}

/** The data size whose StateBroadcast frame is exactly `frameBytes` (16-bit msgpack lengths, 2-letter names). */
function dataFor(frameBytes: number): number {
  const { join, update, endTurn } = setup();
  const [a, b] = [join("s0", false), join("s0", false)] as [Member, Member];
  endTurn();
  const sent = (n: number, bytes: number) => {
    const from = b.sent.length;
    update(a, n, bytes);
    endTurn();
    return b.sent.slice(from).find((x) => !x.front)!.frame;
  };
  const data = 60_000 + frameBytes - sent(1000, 60_000).length;
  const frame = sent(1001, data);
  expect(frame.length).toBe(frameBytes);
  // The quick reading of a big broadcast agrees with decoding it.
  const body = frame.subarray(4);
  const msg = decodeMessage(body, { extensions: true });
  expect(msg.type === "StateBroadcast" && `${msg.source_instance_name}:${msg.timestamp}`).toBe(_bigBroadcast(body)!);
  return data;
}

function runTrial(seed: number, exact: number): { frames: number; exactFrames: number; bigFrames: number } {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const { relay, clock, members, join, update, endTurn } = setup();
  const alive = () => members.filter((m) => !m.gone && !m.refused && m.conn.state === "registered");
  const start = 2 + Math.floor(rnd() * 5);
  for (let i = 0; i < start; i++) join(pick(SESSIONS), rnd() < 0.15);
  endTurn();
  let ts = 1000;
  let frames = 0;
  let exactFrames = 0;
  let bigFrames = 0;
  const steps = 10 + Math.floor(rnd() * 40);
  for (let step = 0; step < steps; step++) {
    const r = rnd();
    const live = alive();
    if (live.length === 0) break;
    if (r < 0.55) {
      const from = pick(live);
      const kind = rnd();
      let bytes: number;
      // Sizes from short lists: their update_data is encoded once (_data).
      if (kind < 0.35) bytes = 1 + Math.floor(rnd() * 300);
      else if (kind < 0.65) bytes = pick([1000, 4000, 9000, 16_000, 21_845, 25_000, 32_000, 40_000]);
      else if (kind < 0.85) {
        // Frames of exactly 64 KiB, a byte less or more, or close to it.
        bytes = exact + pick([0, 0, -1, 1, -5, -300]);
        if (bytes === exact) exactFrames++;
      } else {
        bytes = pick([66_000, 70_000, 90_000, 131_072]);
        bigFrames++;
      }
      const n = ts++;
      for (const m of members)
        if (m !== from && !m.gone && m.session === from.session && m.conn.state === "registered")
          m.expected.push(`${from.name}:${n}`);
      update(from, n, bytes);
      frames++;
    } else if (r < 0.63) {
      const m = pick(live);
      const n = ts++;
      m.expected.push(`Pong:${n}`);
      relay.receive(m.conn, encodeMessage({ type: "Ping", timestamp: BigInt(n) }));
    } else if (r < 0.75) {
      endTurn();
    } else if (r < 0.82) {
      join(pick(SESSIONS), rnd() < 0.15);
    } else if (r < 0.87) {
      const m = pick(live);
      m.gone = true;
      relay.closed(m.conn, "closed");
    } else if (r < 0.9) {
      pick(live).refused = true;
      members.find((m) => m.refused && !m.peer.refuse)!.peer.refuse = true;
    } else if (r < 0.95) {
      // A lone header: unanswered only while a frame of this turn is on its way to the member.
      const m = pick(live);
      const before = m.sent.length;
      relay.answerLoneHeader(m.conn);
      if (m.sent.length === before) {
        const turn = m.conn.instance!.session.turn;
        expect(turn?.senders.some((x) => x !== m.conn.instance)).toBe(true);
      }
    } else {
      clock.advance(Math.floor(rnd() * 80));
      relay.nudge();
    }
  }
  endTurn();

  for (const m of members) {
    const received = got(m);
    // One that left or stopped taking frames got a part of them, in order (its socket is gone: the rest is moot).
    if (m.refused || m.gone) expect(m.expected.slice(0, received.length)).toEqual(received);
    else expect(received).toEqual(m.expected);
    if (m.resumer) continue;
    // The turn's views: shared live frames holding broadcasts.
    const held = new Map<ArrayBufferLike, number>();
    for (const x of m.sent) {
      if (x.front || x.own) continue;
      // Whole frames only (_bodies checks).
      const inView = _bodies(x.frame);
      if (x.frame.buffer.byteLength > VIEW_BYTES) {
        expect(inView.length).toBe(1);
        expect(x.frame.byteLength).toBe(x.frame.buffer.byteLength);
      }
      held.set(x.frame.buffer, (held.get(x.frame.buffer) ?? 0) + x.cost);
    }
    for (const [buffer, counted] of held) expect(counted).toBe(buffer.byteLength);
  }
  return { frames, exactFrames, bigFrames };
}

test("random turns: each member gets the others' broadcasts in order, in whole frames, charged each buffer once", () => {
  const exact = dataFor(VIEW_BYTES);
  let frames = 0;
  let exactFrames = 0;
  let bigFrames = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const r = runTrial(seed, exact);
    frames += r.frames;
    exactFrames += r.exactFrames;
    bigFrames += r.bigFrames;
  }
  // The shapes asked for were tried.
  expect(frames).toBeGreaterThan(1500);
  expect(exactFrames).toBeGreaterThan(50);
  expect(bigFrames).toBeGreaterThan(50);
});
