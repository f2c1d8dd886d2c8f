/**
 * The relay's logic without sockets: peers here are plain objects that record
 * frames, which is how the relay sees a connection anyway.
 */
import { registerBody } from "../../support/peers.ts";
import { describe, expect, test } from "bun:test";
import { silentLogger } from "../../../src/lib/log.ts";
import { encodeMessage, toByteArrayWire, type Message } from "../../../src/protocol/messages.ts";
import { createRelay, type Connection, type RelayOptions } from "../../../src/core/index.ts";
import { sessionHash } from "../../../src/core/access.ts";
import { CORE_OPTIONS, manualClock, peer, type TestPeer } from "../../support/fake-peer.ts";

const OPTIONS = CORE_OPTIONS;

interface Joined {
  conn: Connection;
  peer: TestPeer;
  receive(body: Uint8Array): void;
}

/** One StateUpdate from `from`, with its own id. */
function sendUpdate(from: Joined): void {
  from.receive(
    encodeMessage({
      type: "StateUpdate",
      source_instance_id: from.conn.instance!.id,
      timestamp: 1n,
      update_data: toByteArrayWire(Uint8Array.of(1, 2)),
    }),
  );
}

function setup(options: Partial<RelayOptions> = {}) {
  const relay = createRelay({ ...OPTIONS, ...options }, silentLogger);
  function join(name: string, extra: Partial<Extract<Message, { type: "RegisterInstance" }>> = {}): Joined {
    const p = peer();
    const conn = relay.open(p);
    const receive = (body: Uint8Array) => relay.receive(conn, body);
    receive(registerBody(name, extra));
    return { conn, peer: p, receive };
  }
  return { relay, join };
}

describe("relay state", () => {
  test("registration fills the state map; leaving empties it", () => {
    const { relay, join } = setup();
    const a = join("a");
    const b = join("b");
    expect(relay.instanceCount).toBe(2);
    expect([...relay.sessions.values()].map((s) => s.instances.map((i) => i.name))).toEqual([["a", "b"]]);
    relay.closed(a.conn, "closed");
    relay.closed(b.conn, "error");
    expect(relay.instanceCount).toBe(0);
    expect(relay.sessions.size).toBe(0);
    expect(relay.connections.size).toBe(0);
    expect(relay.stats.disconnects.closed).toBe(1);
    expect(relay.stats.disconnects.error).toBe(1);
  });

  test("a broadcast is encoded once: every recipient gets the same bytes object", () => {
    const { join } = setup();
    const a = join("a");
    const b = join("b");
    const c = join("c");
    b.peer.frames.length = 0;
    c.peer.frames.length = 0;
    sendUpdate(a);
    expect(b.peer.frames.length).toBe(1);
    expect(b.peer.frames[0]).toBe(c.peer.frames[0]!);
  });

  test(`each newcomer is listed everyone already there, with their latest activity; \
waiting newcomers share one copy of the list`, () => {
    const { join } = setup();
    const a = join("a");
    const b = join("b");
    const c = join("c");
    const d = join("d");
    const listed = (j: Joined) => {
      const r = j.peer.messages()[0]!;
      if (r.type !== "RegistrationResponse") throw new Error(`expected RegistrationResponse, got ${r.type}`);
      return r.current_instances.map(
        (i) => `${i.name}@${i.last_activity.secs_since_epoch}.${i.last_activity.nanos_since_epoch}`,
      );
    };
    const at = (j: Joined) =>
      `${j.conn.instance!.name}@${Math.floor(j.conn.instance!.lastActivity / 1000)}` +
      `.${(j.conn.instance!.lastActivity % 1000) * 1_000_000}`;
    expect(listed(b)).toEqual([at(a)]);
    expect(listed(d)).toEqual([at(a), at(b), at(c)]);
    // c's and d's lists are views of the same bytes, not copies.
    const listOf = (j: Joined) => j.peer.frames[1]!;
    expect(listOf(d).buffer).toBe(listOf(c).buffer);
    // Activity after the list was built shows in the next newcomer's list.
    const before = Date.now();
    while (Date.now() === before); // the next millisecond, so b's activity has a new time
    sendUpdate(b);
    const e = join("e");
    expect(listed(e)).toEqual([at(a), at(b), at(c), at(d)]);
    expect(listed(e)[1]).not.toBe(listed(d)[1]);
  });

  test("presence watchers are told of every join, also after other watchers left", () => {
    const { relay, join } = setup();
    const watcher = join("w1", { capabilities: ["presence"] });
    const other = join("w2", { capabilities: ["presence"] });
    relay.closed(other.conn, "closed");
    const plain = join("plain");
    join("late");
    const joined = (j: Joined) =>
      j.peer.messages().flatMap((m) => (m.type === "InstanceConnected" ? [m.instance_name] : []));
    expect(joined(watcher)).toEqual(["w2", "plain", "late"]);
    expect(joined(plain)).toEqual([]);
    relay.closed(watcher.conn, "closed");
    expect(relay.sessions.values().next().value!.presenceWatchers).toBe(0);
  });

  test("a closed connection is announced once, however many times its socket reports closing", () => {
    const { relay, join } = setup();
    const a = join("a");
    const b = join("b");
    b.peer.frames.length = 0;
    relay.closed(a.conn, "closed");
    relay.closed(a.conn, "error");
    expect(b.peer.messages().filter((m) => m.type === "InstanceDisconnected").length).toBe(1);
  });

  test("a recipient whose queue is full is cut with the last word and the others are told", () => {
    const { relay, join } = setup();
    const a = join("a");
    const slow = join("slow");
    const c = join("c");
    c.peer.frames.length = 0;
    slow.peer.refuse = true;
    sendUpdate(a);
    expect(slow.peer.closedHow).toBe("closeWith");
    expect(slow.peer.messages().at(-1)).toEqual({ type: "Error", message: "Connection lost" });
    expect(relay.stats.drops.slow_consumer).toBe(1);
    expect(relay.stats.disconnects.slow_consumer).toBe(1);
    const seen = c.peer.messages().map((m) => m.type);
    expect(seen).toEqual(["StateBroadcast", "InstanceDisconnected"]);
  });

  test("the rate limit holds over any 60 s span, not just aligned windows; one Error a minute", () => {
    const clock = manualClock();
    const { join } = setup({ rateLimit: 10, clock });
    const a = join("a");
    const inst = a.conn.instance!;
    a.peer.frames.length = 0;
    const ping = encodeMessage({ type: "Ping", timestamp: 1n });
    // 10 late in one minute and 10 early in the next were all let through by a fixed window.
    clock.advance(59_000);
    for (let i = 0; i < 10; i++) a.receive(ping);
    clock.advance(1_500);
    for (let i = 0; i < 10; i++) a.receive(ping);
    const types = a.peer.messages().map((m) => m.type);
    expect(types.filter((t) => t === "Pong").length).toBe(10);
    expect(types.filter((t) => t === "Error").length).toBe(1);
    expect(inst.rateLimited).toBe(10);
    // A minute and a slot later the budget is back, and a new drop may say so again.
    clock.advance(61_000);
    a.peer.frames.length = 0;
    for (let i = 0; i < 11; i++) a.receive(ping);
    expect(a.peer.messages().map((m) => m.type)).toEqual([...Array(10).fill("Pong"), "Error"]);
  });

  test("oversized frames count toward the rate limit", () => {
    const clock = manualClock();
    const { relay, join } = setup({ rateLimit: 3, clock });
    const a = join("a");
    a.peer.frames.length = 0;
    for (let i = 0; i < 3; i++) relay.oversized(a.conn, 2 << 20);
    a.receive(encodeMessage({ type: "Ping", timestamp: 1n }));
    expect(a.peer.messages().map((m) => (m.type === "Error" ? m.message : m.type))).toEqual([
      "Message too large: 2097152 bytes (max: 1048576)",
      "Message too large: 2097152 bytes (max: 1048576)",
      "Message too large: 2097152 bytes (max: 1048576)",
      "Rate limit exceeded for instance a",
    ]);
  });

  test("handshake deadline: tick closes connections that never registered, and only those", () => {
    const { relay, join } = setup({ handshakeTimeoutMs: 1000 });
    const registered = join("a");
    const lurker = peer();
    const conn = relay.open(lurker);
    relay.tick(Date.now() + 500);
    expect(lurker.closedHow).toBeNull();
    relay.tick(Date.now() + 1001);
    expect(lurker.closedHow).toBe("close");
    expect(conn.state).toBe("closed");
    expect(registered.conn.state).toBe("registered");
    expect(relay.stats.disconnects.handshake_timeout).toBe(1);
  });

  test("sessions are named by a short hash; the token itself is kept nowhere in the state", () => {
    const token = "very-secret-token-123";
    const secret = new Uint8Array(32).fill(7);
    const { relay, join } = setup({ tokens: [token], sessionSecret: secret });
    join("a", { session_token: token });
    const ids = [...relay.sessions.keys()];
    expect(ids).toEqual([sessionHash(token, secret)]);
    expect(JSON.stringify(ids)).not.toContain(token);
    expect(sessionHash(token, secret)).toMatch(/^[0-9a-f]{12}$/);
    // Keyed: another relay's secret names the same token differently.
    expect(sessionHash(token, new Uint8Array(32).fill(8))).not.toBe(sessionHash(token, secret));
  });

  test("shutdown: closeAll closes everyone gracefully and tells no one about the others", () => {
    const { relay, join } = setup();
    const a = join("a");
    const b = join("b");
    b.peer.frames.length = 0;
    relay.beginShutdown();
    relay.closeAll();
    expect(a.peer.closedHow).toBe("closeWith");
    expect(b.peer.closedHow).toBe("closeWith");
    expect(b.peer.messages()).toEqual([{ type: "Error", message: "Connection lost" }]);
    expect(relay.instanceCount).toBe(0);
  });

  test("nudges: only registered instances sent nothing for the interval get a Pong with the relay's time", () => {
    const clock = manualClock();
    const { relay, join } = setup({ nudgeIntervalMs: 40, clock });
    const quiet = join("quiet");
    const busy = join("busy");
    const lurker = peer();
    relay.open(lurker);
    quiet.peer.frames.length = 0;
    busy.peer.frames.length = 0;
    clock.advance(30);
    relay.nudge();
    expect(quiet.peer.frames.length).toBe(0);
    sendUpdate(quiet); // busy is sent a broadcast at 30 ms
    clock.advance(15);
    relay.nudge();
    expect(quiet.peer.messages()).toEqual([{ type: "Pong", timestamp: BigInt(clock.now()) }]);
    expect(busy.peer.messages().map((m) => m.type)).toEqual(["StateBroadcast"]);
    expect(lurker.frames.length).toBe(0);
    clock.advance(40);
    relay.nudge();
    expect(busy.peer.messages().map((m) => m.type)).toEqual(["StateBroadcast", "Pong"]);
    expect(quiet.peer.messages().map((m) => m.type)).toEqual(["Pong", "Pong"]);
    expect(relay.stats.nudges).toBe(3);
  });

  test("a nudge sweep sends every quiet instance the same Pong, shared (queued by reference) like a broadcast", () => {
    // A copy per peer doubled the relay's work per nudge; a sweep can nudge a thousand peers.
    const clock = manualClock();
    const { relay, join } = setup({ nudgeIntervalMs: 40, clock });
    const a = join("a");
    const b = join("b");
    a.peer.frames.length = 0;
    b.peer.frames.length = 0;
    a.peer.owned.length = 0;
    b.peer.owned.length = 0;
    clock.advance(45);
    relay.nudge();
    expect(a.peer.frames.length).toBe(1);
    expect(b.peer.frames[0]).toBe(a.peer.frames[0]!);
    expect([...a.peer.owned, ...b.peer.owned]).toEqual([false, false]);
    expect(a.peer.messages()).toEqual([{ type: "Pong", timestamp: BigInt(clock.now()) }]);
  });

  test(`handshake slots full: an older handshake (past a round trip or two) is closed, the newcomer stays; \
when all are that young, the oldest of them`, () => {
    const clock = manualClock();
    const { relay } = setup({ maxHandshakes: 2, clock });
    const first = peer("10.0.0.1");
    const second = peer("10.0.0.2");
    const third = peer("10.0.0.3");
    relay.open(first);
    clock.advance(2000);
    relay.open(second);
    const conn = relay.open(third);
    expect(first.closedHow).toBe("terminate");
    expect(second.closedHow).toBeNull();
    expect(conn.state).toBe("handshake");
    expect(relay.handshaking).toBe(2);
    const fourth = peer("10.0.0.4");
    relay.open(fourth);
    expect(second.closedHow).toBe("terminate");
    expect(fourth.closedHow).toBeNull();
    expect(relay.stats.disconnects.handshake_limit).toBe(2);
  });

  test("handshake slots full: an address holding more than the newcomer's gives one up, however young", () => {
    const { relay } = setup({ maxHandshakes: 3 });
    const flood = [peer("10.0.0.9"), peer("10.0.0.9"), peer("10.0.0.8")];
    for (const p of flood) relay.open(p);
    const player = peer("10.0.0.1");
    const conn = relay.open(player);
    expect(flood[0]!.closedHow).toBe("terminate");
    expect(conn.state).toBe("handshake");
  });

  test("a newcomer that has not taken its registration response and history within the replay timeout is cut", () => {
    const clock = manualClock();
    const { relay, join } = setup({ replayTimeoutMs: 1000, clock });
    const a = join("a");
    const b = join("b");
    (b.peer as { frontBytes: number }).frontBytes = 500;
    clock.advance(999);
    relay.tick(clock.now());
    expect(b.conn.state).toBe("registered");
    clock.advance(1);
    relay.tick(clock.now());
    expect(b.conn.state).toBe("closed");
    expect(b.peer.messages().at(-1)).toEqual({ type: "Error", message: "Connection lost" });
    expect(relay.stats.disconnects.replay_timeout).toBe(1);
    // a took everything at once: never cut.
    expect(a.conn.state).toBe("registered");
  });
});
