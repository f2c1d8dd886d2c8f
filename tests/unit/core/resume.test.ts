/**
 * Resumption in the relay core (docs/resume.md), without sockets: members that
 * asked for "resume" are numbered, acknowledged and parked; a ResumeInstance on
 * a new connection restores them with the gap, exactly once and in order; what
 * cannot be restored is refused with one Error. Plain members see none of it.
 */
import { describe, expect, test } from "bun:test";
import { silentLogger } from "../../../src/lib/log.ts";
import {
  byteArrayValues,
  encodeMessage,
  toByteArrayWire,
  type Message,
  type Variant,
} from "../../../src/protocol/messages.ts";
import { createRelay, type Connection, type RelayOptions } from "../../../src/core/index.ts";
import { createHistory } from "../../../src/core/history.ts";
import { registerBody } from "../../support/peers.ts";
import { CORE_OPTIONS, manualClock, peer, type TestPeer } from "../../support/fake-peer.ts";

const SECRET = new Uint8Array(32).fill(7);
const OPTIONS: RelayOptions = { ...CORE_OPTIONS, resumeWindowMs: 30_000, sessionSecret: SECRET };

interface Member {
  conn: Connection;
  peer: TestPeer;
  receive(body: Uint8Array): void;
  edit(value: number): void;
}

/** What a tunnel keeps: its member, where it stands in each stream, what it has had acknowledged. */
interface TunnelView {
  name: string;
  id: Uint8Array;
  secret: Uint8Array;
  cursor: Map<string, bigint>;
  own: Map<string, bigint>;
  acked: number;
  gen: bigint;
  /** The values of the broadcasts passed on, in order. */
  seen: number[];
  /** The connection being followed and how far into its frames this view has read. */
  on: TestPeer | null;
  read: number;
}

function setup(options: Partial<RelayOptions> = {}) {
  const clock = manualClock();
  const relay = createRelay({ ...OPTIONS, clock, ...options }, silentLogger);
  function attach(p: TestPeer, first: Uint8Array): Member {
    const conn = relay.open(p);
    const receive = (body: Uint8Array) => relay.receive(conn, body);
    receive(first);
    const edit = (value: number) =>
      receive(
        encodeMessage({
          type: "StateUpdate",
          source_instance_id: conn.instance!.id,
          timestamp: BigInt(value),
          update_data: toByteArrayWire(Uint8Array.of(value)),
        }),
      );
    return { conn, peer: p, receive, edit };
  }
  const join = (name: string, capabilities: string[] = []) => attach(peer(), registerBody(name, { capabilities }));
  return { relay, clock, attach, join };
}

/** Reads what the member was sent since last time, as its tunnel would: marks, acks, broadcasts. */
function follow(view: TunnelView, m: Member): Message[] {
  if (view.on !== m.peer) [view.on, view.read] = [m.peer, 0];
  const all = m.peer.messages();
  const fresh = all.slice(view.read);
  view.read = all.length;
  let mark: Variant<"Mark"> | null = null;
  for (const msg of fresh) {
    if (msg.type === "Resumable") {
      view.secret = msg.secret;
      if (view.secret.length === 0) view.cursor = new Map(msg.cursor);
      if (view.own.size === 0) view.own = new Map(msg.cursor);
      view.gen = msg.generation;
      view.acked = Number(msg.consumed);
    } else if (msg.type === "Mark") mark = msg;
    else if (msg.type === "Acked") {
      view.acked++;
      if (msg.q > 0n) {
        view.own.set(msg.origin, msg.q);
        if (msg.q > (view.cursor.get(msg.origin) ?? 0n)) view.cursor.set(msg.origin, msg.q);
      }
    } else if (msg.type === "StateBroadcast") {
      view.seen.push(byteArrayValues(msg.update_data)[0]!);
      if (mark) view.cursor.set(mark.origin, mark.q);
      mark = null;
    }
  }
  return fresh;
}

function viewOf(name: string, m: Member): TunnelView {
  const view: TunnelView = {
    name,
    id: m.conn.instance!.id,
    secret: new Uint8Array(0),
    cursor: new Map(),
    own: new Map(),
    acked: 0,
    gen: 0n,
    seen: [],
    on: null,
    read: 0,
  };
  follow(view, m);
  return view;
}

function resumeBody(view: TunnelView, extra: Partial<Variant<"ResumeInstance">> = {}): Uint8Array {
  return encodeMessage({
    type: "ResumeInstance",
    instance_name: view.name,
    version: "0.1.0",
    session_token: null,
    capabilities: ["resume"],
    instance_id: view.id,
    secret: view.secret,
    cursor: [...view.cursor],
    own: [...view.own],
    acked: BigInt(view.acked),
    generation: view.gen,
    ...extra,
  });
}

const values = (msgs: Message[]) =>
  msgs.filter((m) => m.type === "StateBroadcast").map((m) => byteArrayValues(m.update_data)[0]);
const types = (msgs: Message[]) => msgs.map((m) => m.type);

describe("resumption: what a member that asked for it is sent", () => {
  test("a plain member gets none of it; a tunnel gets the secret after its response, then marks and acks", () => {
    const { join } = setup();
    const plain = join("plain");
    const tunnel = join("tunnel", ["resume"]);
    const plainFirst = plain.peer.messages();
    expect(types(plainFirst)).toEqual(["RegistrationResponse"]);
    const first = tunnel.peer.messages();
    expect(types(first)).toEqual(["RegistrationResponse", "Resumable"]);
    const resumable = first[1] as Variant<"Resumable">;
    expect(resumable.secret.length).toBe(32);
    expect(resumable.window_ms).toBe(30_000n);
    plain.edit(1);
    tunnel.edit(2);
    const toTunnel = tunnel.peer.messages().slice(2);
    expect(types(toTunnel)).toEqual(["Mark", "StateBroadcast", "Acked"]);
    expect(types(plain.peer.messages())).toEqual(["RegistrationResponse", "StateBroadcast"]);
    // Its own edit is acknowledged with its number; the other's broadcast was numbered just before it.
    const mark = toTunnel[0] as Variant<"Mark">;
    const acked = toTunnel[2] as Variant<"Acked">;
    expect(acked.origin).toBe(mark.origin);
    expect(acked.q).toBe(mark.q + 1n);
  });

  test("with resumption off (window 0) the capability means nothing", () => {
    const { join } = setup({ resumeWindowMs: 0 });
    const tunnel = join("tunnel", ["resume"]);
    tunnel.edit(1);
    expect(types(tunnel.peer.messages())).toEqual(["RegistrationResponse"]);
  });

  test("an edit dropped by the rate limit is still acknowledged (the tunnel must not send it again)", () => {
    const { join } = setup({ rateLimit: 2 });
    const tunnel = join("tunnel", ["resume"]);
    for (let i = 0; i < 4; i++) tunnel.edit(i);
    const acks = tunnel.peer.messages().filter((m) => m.type === "Acked") as Variant<"Acked">[];
    expect(acks.map((a) => a.q > 0n)).toEqual([true, true, false, false]);
  });
});

describe("resumption: a lost connection", () => {
  test("parks the member: no notice, the name held; past the window a normal leave", () => {
    const { relay, clock, join } = setup();
    const watcher = join("watcher");
    const tunnel = join("tunnel", ["resume"]);
    relay.closed(tunnel.conn, "error");
    expect(relay.parked).toBe(1);
    expect(relay.instanceCount).toBe(2);
    expect(types(watcher.peer.messages())).toEqual(["RegistrationResponse"]);
    const twin = relay.open(peer());
    relay.receive(twin, registerBody("tunnel"));
    expect(twin.state).toBe("closed");
    clock.advance(29_000);
    relay.tick();
    expect(relay.parked).toBe(1);
    clock.advance(1_500);
    relay.tick();
    expect(relay.parked).toBe(0);
    expect(relay.instanceCount).toBe(1);
    const last = watcher.peer.messages().at(-1)!;
    expect(last.type === "InstanceDisconnected" && last.instance_name).toBe("tunnel");
    expect(relay.stats.disconnects.resume_expired).toBe(1);
  });

  test("Leave is a leave now, without a grace window", () => {
    const { relay, join } = setup();
    const watcher = join("watcher");
    const tunnel = join("tunnel", ["resume"]);
    tunnel.receive(encodeMessage({ type: "Leave", reason: "player quit" }));
    expect(relay.parked).toBe(0);
    expect(watcher.peer.messages().at(-1)!.type).toBe("InstanceDisconnected");
  });

  test("a relay shutting down gives a tunnel no 'Connection lost' (it resumes after the restart)", () => {
    const { relay, join } = setup();
    const plain = join("plain");
    const tunnel = join("tunnel", ["resume"]);
    relay.beginShutdown();
    relay.closeAll();
    expect(plain.peer.closedHow).toBe("closeWith");
    expect(tunnel.peer.closedHow).toBe("close");
  });
});

describe("resumption: coming back", () => {
  test("same name and ID at once; the gap exactly once, in order; its own edits not sent back", () => {
    const { relay, attach, join } = setup();
    const other = join("other");
    const first = join("tunnel", ["resume"]);
    const view = viewOf("tunnel", first);
    other.edit(1);
    first.edit(2);
    follow(view, first);
    expect(view.seen).toEqual([1]);
    relay.closed(first.conn, "closed");
    other.edit(3);
    other.edit(4);
    const back = attach(peer(), resumeBody(view));
    const answer = follow(view, back);
    expect(types(answer)).toEqual(["Mark", "StateBroadcast", "Mark", "StateBroadcast", "Resumable"]);
    expect(view.seen).toEqual([1, 3, 4]);
    // Same instance, same ID: Sova's StateUpdates stay valid.
    expect(back.conn.instance).toBe(first.conn.instance);
    expect(view.acked).toBe(1);
    back.edit(5);
    other.edit(6);
    follow(view, back);
    expect(view.seen).toEqual([1, 3, 4, 6]);
    expect(values(other.peer.messages())).toEqual([2, 5]);
    expect(types(other.peer.messages())).not.toContain("InstanceDisconnected");
    expect(relay.stats.resumptions).toBe(1);
    expect(relay.stats.resumeReplayed).toBe(2);
  });

  test("from a stale (half-open) connection: the old one is retired without a word, the new one takes over", () => {
    const { relay, attach, join } = setup();
    const other = join("other");
    const first = join("tunnel", ["resume"]);
    const view = viewOf("tunnel", first);
    other.edit(1);
    // The tunnel saw nothing of it: the old connection went half-open before.
    const back = attach(peer(), resumeBody(view));
    follow(view, back);
    expect(view.seen).toEqual([1]);
    expect(first.peer.closedHow).toBe("terminate");
    expect(relay.stats.resumeTakeovers).toBe(1);
    relay.closed(first.conn, "error");
    expect(relay.parked).toBe(0);
    expect(types(other.peer.messages())).not.toContain("InstanceDisconnected");
  });

  test("a wrong secret, or a gap no longer held, is one Error and a close", () => {
    const { relay, attach, join } = setup({ resumeBufferBytes: 200 });
    const other = join("other");
    const first = join("tunnel", ["resume"]);
    const view = viewOf("tunnel", first);
    relay.closed(first.conn, "closed");
    const forged = attach(peer(), resumeBody(view, { secret: new Uint8Array(32) }));
    expect(forged.peer.messages()).toEqual([{ type: "Error", message: "Resume refused: the secret does not match" }]);
    // Past the byte bound the oldest frames of the gap are gone: nothing is sent rather than a gap with a hole.
    for (let i = 0; i < 10; i++) other.edit(i);
    const late = attach(peer(), resumeBody(view));
    const refused = late.peer.messages();
    expect(refused).toHaveLength(1);
    expect(refused[0]!.type === "Error" && refused[0]!.message).toMatch(/^Resume refused: what was broadcast/);
    expect(late.conn.state).toBe("closed");
    expect(relay.stats.resumeRefused.secret).toBe(1);
    expect(relay.stats.resumeRefused.gap).toBe(1);
    expect(relay.stats.resumeLogEvicted).toBeGreaterThan(0);
  });

  test("a member that left, or whose window passed, is not brought back by its secret", () => {
    const { relay, clock, attach, join } = setup();
    join("other");
    const left = join("left", ["resume"]);
    const leftView = viewOf("left", left);
    left.receive(encodeMessage({ type: "Leave", reason: "player quit" }));
    const again = attach(peer(), resumeBody(leftView));
    expect(again.peer.messages()).toEqual([
      {
        type: "Error",
        message: "Resume refused: this member is no longer held: it left, was cut, or its window passed",
      },
    ]);
    expect(again.conn.state).toBe("closed");
    const away = join("away", ["resume"]);
    const awayView = viewOf("away", away);
    relay.closed(away.conn, "closed");
    clock.advance(31_000);
    relay.tick();
    const late = attach(peer(), resumeBody(awayView));
    expect(late.conn.state).toBe("closed");
    expect(relay.stats.resumeRefused.gone).toBe(2);
    expect(relay.instanceCount).toBe(1);
  });

  test("a member unknown here (from before a restart) is taken only within the window after the relay started", () => {
    const before = setup();
    const view = viewOf("tunnel", before.join("tunnel", ["resume"]));
    const late = setup();
    late.clock.advance(30_000);
    expect(late.attach(peer(), resumeBody(view)).conn.state).toBe("closed");
    expect(late.relay.stats.resumeRefused.gone).toBe(1);
    const soon = setup();
    soon.clock.advance(29_000);
    expect(soon.attach(peer(), resumeBody(view)).conn.state).toBe("registered");
  });

  test("resuming takes a slot as registering does: the address's and the session's limits hold", () => {
    const before = setup();
    const view = viewOf("tunnel", before.join("tunnel", ["resume"]));
    for (const [limit, message] of [
      [{ maxInstancesPerAddress: 1 }, "Resume refused: Maximum instances from this address (1) reached"],
      [{ maxInstancesPerSession: 1 }, "Resume refused: Maximum instances in this session (1) reached"],
    ] as const) {
      const after = setup(limit);
      after.join("first");
      const refused = after.attach(peer(), resumeBody(view));
      expect(refused.conn.state).toBe("closed");
      expect(refused.peer.messages()).toEqual([{ type: "Error", message }]);
      expect(after.relay.stats.resumeRefused.capacity).toBe(1);
    }
  });

  test("after a restart, history kept on disk fills the gap; its own edits in it are counted, not sent", () => {
    const store = new Map<string, { seq: number; at: number; frame: Uint8Array }[]>();
    const sink = {
      appended: (session: string, entry: { seq: number; at: number; frame: Uint8Array }) =>
        void (store.get(session) ?? store.set(session, []).get(session)!).push(entry),
      evicted() {},
    };
    const limits = { maxEntries: 100, maxBytes: 1 << 20, maxAgeMs: 0 };
    const before = setup({ history: createHistory(limits, sink, "disk1") });
    const other = before.join("other");
    const first = before.join("tunnel", ["resume"]);
    const view = viewOf("tunnel", first);
    other.edit(1);
    follow(view, first);
    first.edit(2); // relayed, but its ack never reached the tunnel
    view.read = first.peer.messages().length;
    other.edit(3);
    // The relay is gone; a new one reads the same database back (same epoch, same session secret).
    const history = createHistory(limits, undefined, "disk1");
    for (const [session, entries] of store) for (const e of entries) history.restore(session, e);
    const after = setup({ history });
    const back = after.attach(peer(), resumeBody(view));
    follow(view, back);
    expect(view.seen).toEqual([1, 3]);
    expect(view.acked).toBe(1);
    expect(back.conn.instance!.idText).toBe(first.conn.instance!.idText);
  });
});

describe("resumption: half-open connections and other nodes", () => {
  test("a tunnel member silent for 6 s is taken for half-open: parked, its window starting then", () => {
    const { relay, clock, join } = setup();
    const watcher = join("watcher");
    const tunnel = join("tunnel", ["resume"]);
    tunnel.peer.onTerminate = () => relay.closed(tunnel.conn, "error");
    clock.advance(5_900);
    watcher.receive(encodeMessage({ type: "Pong", timestamp: 0n }));
    relay.tick();
    expect(relay.parked).toBe(0);
    clock.advance(200);
    relay.tick();
    expect(relay.parked).toBe(1);
    // Once, though the transport reported the socket gone as it was terminated.
    expect(relay.stats.parked).toBe(1);
    expect(tunnel.peer.closedHow).toBe("terminate");
    expect(types(watcher.peer.messages())).not.toContain("InstanceDisconnected");
  });

  test("a node going down parks its members that may resume; the same member joining from another node moves", () => {
    const { relay, clock, join } = setup();
    const local = join("local");
    const member = {
      node: "a",
      session: "open",
      id: "7d444840-9dc0-11d1-b245-5ffdce74fad2",
      name: "faraway",
      version: "0.1.0",
      connectedAt: clock.now(),
      lastActivity: clock.now(),
      resumable: true,
      gen: 0,
    };
    relay.remote.joined(member);
    relay.remote.left("open", member.id, { node: "a", down: true });
    expect(relay.parked).toBe(1);
    // Node a's late word about it no longer counts once it resumed on node b.
    relay.remote.joined({ ...member, node: "b", gen: 1 });
    expect(relay.parked).toBe(0);
    relay.remote.left("open", member.id, { node: "a", down: false });
    expect(types(local.peer.messages())).toEqual(["RegistrationResponse"]);
    // Past the window without a word from node b, a parked member would have left; it is b's now and stays.
    clock.advance(40_000);
    relay.tick();
    expect([...relay.sessions.get("open")!.instances].map((i) => i.name)).toEqual(["local", "faraway"]);
    relay.remote.left("open", member.id, { node: "b", down: false });
    expect(local.peer.messages().at(-1)!.type).toBe("InstanceDisconnected");
  });
});
