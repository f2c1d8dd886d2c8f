/**
 * A session's broadcasts of one turn, queued to each member at the turn's end (src/core/turn.ts): the
 * relay as the host builds it, with the end of the turn in the test's hands.
 */
import { describe, expect, test } from "bun:test";
import { createRelay, type Connection, type RelayOptions } from "../../../src/core/index.ts";
import { createOutbox, type Outbox } from "../../../src/lib/outbox.ts";
import { silentLogger } from "../../../src/lib/log.ts";
import { encodeMessage, type Message, toByteArrayWire } from "../../../src/protocol/messages.ts";
import { CORE_OPTIONS, outboxPeer, peer, readFrames, type TestPeer } from "../../support/fake-peer.ts";
import { registerBody } from "../../support/peers.ts";

/** A StateUpdate from `conn` stamped `n` (its broadcast carries it): `bytes` bytes of `fill`. */
function updateBody(conn: Connection, n: number, bytes: number, fill: number): Uint8Array {
  return encodeMessage({
    type: "StateUpdate",
    source_instance_id: conn.instance!.id,
    timestamp: BigInt(n),
    update_data: toByteArrayWire(new Uint8Array(bytes).fill(fill)),
  });
}

interface Member {
  name: string;
  conn: Connection;
  peer: TestPeer;
  /** Sends a StateUpdate stamped `n` (its broadcast carries it), of `bytes` bytes. */
  update(n: number, bytes?: number): void;
  receive(msg: Message): void;
  /** What it got since the last call, as [type, sender or timestamp] pairs. */
  got(): string[];
}

function setup(options: Partial<RelayOptions> = {}) {
  const ends: Array<() => void> = [];
  const relay = createRelay(
    { ...CORE_OPTIONS, nudgeIntervalMs: 40, endOfTurn: (fn) => ends.push(fn), ...options },
    silentLogger,
  );
  /** Every queueing, across members, in the order it happened. */
  const queued: string[] = [];
  function join(name: string, token: string | null = null, capabilities: string[] = []): Member {
    const p = peer();
    const send = p.send;
    p.send = (...args) => {
      queued.push(name);
      return send(...args);
    };
    const conn = relay.open(p);
    relay.receive(conn, registerBody(name, { session_token: token, capabilities }));
    let seen = 0;
    const m: Member = {
      name,
      conn,
      peer: p,
      update: (n, bytes = 2) => relay.receive(conn, updateBody(conn, n, bytes, n & 0x7f)),
      receive: (msg) => relay.receive(conn, encodeMessage(msg)),
      got() {
        const all = p.messages();
        const fresh = all.slice(seen);
        seen = all.length;
        return fresh.map((msg) =>
          msg.type === "StateBroadcast"
            ? `${msg.source_instance_name}:${msg.timestamp}`
            : msg.type === "InstanceDisconnected"
              ? `left:${msg.instance_name}`
              : msg.type,
        );
      },
    };
    m.got();
    return m;
  }
  /** The end of the turn, as the host's event loop brings it. */
  function endTurn(): void {
    for (const fn of ends.splice(0)) fn();
  }
  return { relay, join, endTurn, queued };
}

describe("a turn's broadcasts", () => {
  test("reach each member at the turn's end, in the order they came, without its own, in one piece", () => {
    const { relay, join, endTurn } = setup();
    const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => join(n)) as [Member, Member, Member, Member];
    endTurn();
    for (const m of [a, b, c, d]) m.got();
    const before = relay.stats.deliveries;
    const sent = d.peer.frames.length;
    a.update(1);
    b.update(2);
    c.update(3);
    expect(d.peer.frames.length).toBe(sent);
    endTurn();
    expect(d.got()).toEqual(["a:1", "b:2", "c:3"]);
    expect(a.got()).toEqual(["b:2", "c:3"]);
    expect(b.got()).toEqual(["a:1", "c:3"]);
    expect(c.got()).toEqual(["a:1", "b:2"]);
    // One buffer, not one per frame: d's three frames are one view; b's two are split by its own.
    expect(d.peer.frames.length).toBe(sent + 1);
    expect(relay.stats.deliveries - before).toBe(9);
  });

  test("anything else sent to a member first gives it the turn so far: a Pong, a departure", () => {
    const { relay, join, endTurn } = setup();
    const [a, b, c] = ["a", "b", "c"].map((n) => join(n)) as [Member, Member, Member];
    endTurn();
    for (const m of [a, b, c]) m.got();
    a.update(1);
    b.receive({ type: "Ping", timestamp: 7n });
    c.update(2);
    relay.closed(c.conn, "closed");
    a.update(3);
    endTurn();
    expect(b.got()).toEqual(["a:1", "Pong", "c:2", "left:c", "a:3"]);
    expect(a.got()).toEqual(["c:2", "left:c"]);
  });

  test("a member joining mid-turn gets what came after it, not before (its history has that)", () => {
    const { join, endTurn } = setup();
    const [a, b] = ["a", "b"].map((n) => join(n)) as [Member, Member];
    endTurn();
    b.got();
    a.update(1);
    const e = join("e");
    a.update(2);
    endTurn();
    expect(b.got()).toEqual(["a:1", "a:2"]);
    expect(e.got()).toEqual(["a:2"]);
  });

  test("each member is counted for every buffer its views keep alive, whole, once; a chunk mostly its own is copied", () => {
    const { join, endTurn } = setup();
    const [a, b] = ["a", "b"].map((n) => join(n)) as [Member, Member];
    endTurn();
    const at = { a: a.peer.frames.length, b: b.peer.frames.length };
    for (let n = 1; n <= 20; n++) a.update(n, 4000);
    b.update(99, 10);
    endTurn();
    for (const [m, from] of [
      [a, at.a],
      [b, at.b],
    ] as const) {
      const held = new Map<ArrayBufferLike, number>();
      m.peer.frames.slice(from).forEach((view, i) => {
        held.set(view.buffer, (held.get(view.buffer) ?? 0) + m.peer.costs[from + i]!);
      });
      expect(held.size).toBeGreaterThan(0);
      // A member that stopped reading holds at most these buffers, and is counted for each whole.
      for (const [buffer, counted] of held) expect(counted).toBe(buffer.byteLength);
    }
    // a sent 20 of 21 frames: what it gets is copied out, not a view keeping its own frames alive for it.
    expect(a.got()).toEqual(["b:99"]);
    for (const view of a.peer.frames.slice(at.a)) expect(view.buffer.byteLength).toBe(view.byteLength);
  });

  test("views and the buffers behind them hold whole frames, at most 64 KiB (what a WebSocket carrier may send from one write)", () => {
    const { join, endTurn } = setup();
    const [a, b, c] = ["a", "b", "c"].map((n) => join(n)) as [Member, Member, Member];
    endTurn();
    const at = c.peer.frames.length;
    for (let n = 1; n <= 40; n++) (n % 2 ? a : b).update(n, 3000);
    a.update(41, 100_000);
    endTurn();
    const views = c.peer.frames.slice(at);
    expect(views.length).toBeGreaterThan(2);
    for (const v of views) {
      const frames = readFrames([v]);
      expect(frames.length).toBeGreaterThan(0);
      // One frame bigger than that goes as it is; else a view and the buffer it keeps stay within 64 KiB.
      if (v.buffer.byteLength > 64 * 1024) expect([frames.length, v.byteLength]).toEqual([1, v.buffer.byteLength]);
      // A frame past 4 KiB is not copied: the member gets the buffer the history holds.
      if (v.byteLength > 4096 && frames.length === 1) expect(v.buffer.byteLength).toBe(v.byteLength);
    }
    expect(readFrames(views)).toHaveLength(41);
  });

  test("a lone header while the turn holds frames for the member is not answered: those frames are its nudge", () => {
    const { relay, join, endTurn } = setup();
    const [a, b] = ["a", "b"].map((n) => join(n)) as [Member, Member];
    endTurn();
    b.got();
    const nudges = relay.stats.nudges;
    a.update(1);
    relay.answerLoneHeader(b.conn);
    // a's own frame is not on its way to a: a's lone header is answered.
    relay.answerLoneHeader(a.conn);
    endTurn();
    expect(b.got()).toEqual(["a:1"]);
    expect(relay.stats.nudges - nudges).toBe(1);
  });

  test("stopping, what was read before is relayed: the shutdown's flush waits for it", () => {
    const { relay, join } = setup();
    const [a, b] = ["a", "b"].map((n) => join(n)) as [Member, Member];
    b.got();
    a.update(1);
    relay.beginShutdown();
    expect(b.got()).toEqual(["a:1"]);
    expect(b.peer.pendingBytes).toBe(0);
  });

  test("sessions' turns are queued in the order their first frames came: the oldest has waited longest", () => {
    const [A, B] = ["ensemble-A-token", "ensemble-B-token"];
    const { join, endTurn, queued } = setup({ tokens: [A, B] });
    const [a1, a2, b1, b2] = [join("a1", A), join("a2", A), join("b1", B), join("b2", B)];
    endTurn();
    queued.length = 0;
    a1.update(1);
    b1.update(2);
    a1.update(3);
    endTurn();
    expect(queued).toEqual(["a2", "b2"]);
    expect(a2.got()).toEqual(["a1:1", "a1:3"]);
    expect(b2.got()).toEqual(["b1:2"]);
  });

  test("a sender cut while its frame starts a new turn is heard before its departure", () => {
    const { join, endTurn } = setup();
    const [a, b, c] = ["a", "b", "c"].map((n) => join(n)) as [Member, Member, Member];
    endTurn();
    c.got();
    b.update(1);
    join("d"); // the members change: a's frame takes b's turn first
    a.peer.refuse = true; // a cannot take b's frame: cut within its own fan-out
    a.update(2);
    endTurn();
    expect(c.got()).toEqual(["b:1", "a:2", "left:a"]);
  });

  test("a session whose other members all may resume (through the tunnel) opens no turn: they get each frame now", () => {
    const { relay, join } = setup({ resumeWindowMs: 30_000, sessionSecret: new Uint8Array(32).fill(3) });
    const a = join("a");
    const t1 = join("t1", null, ["resume"]);
    const t2 = join("t2", null, ["resume"]);
    const before = t1.peer.frames.length;
    a.update(1);
    expect(a.conn.instance!.session.turn).toBeNull();
    expect(t1.peer.frames.length).toBeGreaterThan(before);
    expect(t2.got()).toContain("a:1");
    expect(relay.stats.deliveries).toBeGreaterThanOrEqual(2);
  });

  test("a member that cannot take the turn is cut as a slow consumer; the others get it", () => {
    const { relay, join, endTurn } = setup();
    const [a, b, c] = ["a", "b", "c"].map((n) => join(n)) as [Member, Member, Member];
    endTurn();
    b.got();
    c.peer.refuse = true;
    a.update(1);
    endTurn();
    expect(b.got()).toEqual(["a:1", "left:c"]);
    expect(c.peer.closedHow).toBe("closeWith");
    expect(relay.stats.disconnects.slow_consumer).toBe(1);
  });

  test("a member that stops reading while sending big frames holds what it is counted for (not its own frames)", () => {
    const { join, update, endTurn } = outboxes(8 * 1024 * 1024);
    const a = join("a", () => 0); // stopped reading
    const b = join("b", (n) => n);
    endTurn();
    for (let turn = 0; turn < 200; turn++) {
      update(a.conn, turn, 60_000);
      update(b.conn, turn, 100);
      endTurn();
    }
    // 200 of b's frames wait for a: about 30 KB, not 200 chunks of a's 60 KB.
    expect(a.conn.state).toBe("registered");
    expect(a.outbox.liveBytes).toBeLessThan(2 * a.outbox.pendingBytes + 64 * 1024);
  });

  test("a chunk is counted until the last of a member's views of it is sent", () => {
    const { join, update, endTurn } = outboxes(8 * 1024 * 1024);
    // The writes m's socket takes: all, then one more, then none.
    let writes = Number.POSITIVE_INFINITY;
    const m = join("m", (n) => (writes-- > 0 ? n : 0));
    const a = join("a", (n) => n);
    const b = join("b", (n) => n);
    endTurn();
    m.outbox.flush();
    writes = 0;
    update(a.conn, 0, 3000); // a turn with one frame for m
    endTurn();
    // One ~63 KB chunk of small frames: a's, m's own, b's. m gets two views of it, of ~31 KB each.
    for (let n = 1; n <= 12; n++) update(a.conn, n, 2600);
    update(m.conn, 13, 100);
    for (let n = 14; n <= 25; n++) update(b.conn, n, 2600);
    endTurn();
    // One write goes: the first turn's frame merged with m's first view; the second view keeps the chunk.
    writes = 1;
    m.outbox.flush();
    expect(m.outbox.pendingBytes).toBeLessThan(33_000);
    expect(m.outbox.liveBytes).toBeGreaterThan(62_000);
  });
});

/** Members with the transports' own outbox, each writing to `take` (bytes offered -> bytes taken). */
function outboxes(maxPendingBytes: number) {
  const ends: Array<() => void> = [];
  const relay = createRelay({ ...CORE_OPTIONS, rateLimit: 1e6, endOfTurn: (fn) => ends.push(fn) }, silentLogger);
  function join(name: string, take: (offered: number) => number): { conn: Connection; outbox: Outbox } {
    const outbox = createOutbox({ write: (bytes) => take(bytes.length), end() {} }, { maxPendingBytes });
    const p = outboxPeer(outbox, "10.0.0.1", 1);
    const conn = relay.open(p);
    relay.receive(conn, registerBody(name));
    return { conn, outbox };
  }
  function update(conn: Connection, n: number, bytes: number): void {
    relay.receive(conn, updateBody(conn, n, bytes, 1));
  }
  return {
    join,
    update,
    endTurn() {
      for (const fn of ends.splice(0)) fn();
    },
  };
}
