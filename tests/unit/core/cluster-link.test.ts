/**
 * The relay core's side of the cluster seam (src/core/link.ts), without NATS:
 * a link whose claims the test answers by hand, and peers that record frames
 * (the relay never touches sockets). What crosses to NATS is covered in
 * tests/e2e/cluster.test.ts.
 */
import { stringify as stringifyUuid } from "uuid";
import { describe, expect, test } from "bun:test";
import { resolveConfig } from "../../../src/host/config.ts";
import { silentLogger } from "../../../src/lib/log.ts";
import { createFrameReader } from "../../../src/protocol/framing.ts";
import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  toByteArrayWire,
  type Message,
} from "../../../src/protocol/messages.ts";
import type { ClaimResult, ClusterLink } from "../../../src/core/link.ts";
import { createRelay, type Connection, type Instance, type Peer } from "../../../src/core/index.ts";

interface TestPeer extends Peer {
  frames: Uint8Array[];
  closed: boolean;
  messages(): Message[];
}

function peer(): TestPeer {
  const p: TestPeer = {
    address: "10.0.0.1",
    port: 5000,
    pendingBytes: 0,
    frontBytes: 0,
    frames: [],
    closed: false,
    send(frame) {
      p.frames.push(frame);
      return true;
    },
    close() {
      p.closed = true;
    },
    closeWith(last) {
      p.frames.push(last);
      p.closed = true;
    },
    setFrameLimit() {},
    terminate() {
      p.closed = true;
    },
    messages() {
      const out: Message[] = [];
      const reader = createFrameReader(0xffffffff, {
        frame: (b) => out.push(decodeMessage(b.slice(), { extensions: true })),
        oversized: () => {},
      });
      for (const f of p.frames) reader.push(f);
      return out;
    },
  };
  return p;
}

interface FakeLink extends ClusterLink {
  claims: Array<{ session: string; name: string; answer(r: ClaimResult): Promise<void> }>;
  released: string[];
  joinedNames: string[];
  leftNames: string[];
  published: Uint8Array[];
}

function fakeLink(): FakeLink {
  const link: FakeLink = {
    claims: [],
    released: [],
    joinedNames: [],
    leftNames: [],
    published: [],
    claim(session, name) {
      return new Promise((resolve) => {
        link.claims.push({
          session,
          name,
          async answer(r) {
            resolve(r);
            await Promise.resolve();
            await Promise.resolve();
          },
        });
      });
    },
    release: (_s, name) => void link.released.push(name),
    joined: (inst: Instance) => void link.joinedNames.push(inst.name),
    left: (inst: Instance) => void link.leftNames.push(inst.name),
    broadcast: (_inst, frame) => link.published.push(frame),
    origin: "test-node:1",
    afterPublished: (done) => done(),
  };
  return link;
}

function makeRelay(link?: ClusterLink) {
  return createRelay(
    {
      expectedVersion: "0.1.0",
      maxInstances: 20,
      rateLimit: 0,
      maxMessageSize: 1 << 20,
      tokens: [],
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      link,
    },
    silentLogger,
  );
}

const register = (name: string, capabilities: string[] = []) =>
  encodeMessage({ type: "RegisterInstance", instance_name: name, version: "0.1.0", session_token: null, capabilities });

function update(conn: Connection, value: number): Uint8Array {
  return encodeMessage({
    type: "StateUpdate",
    source_instance_id: conn.instance!.id,
    timestamp: 1n,
    update_data: toByteArrayWire(Uint8Array.of(value)),
  });
}

describe("cluster seam in the relay core", () => {
  test("registration waits for the cluster's claim; frames sent meanwhile are handled after it, in order", async () => {
    const link = fakeLink();
    const relay = makeRelay(link);
    const other = relay.open(peer());
    relay.receive(other, register("other"));
    await link.claims[0]!.answer("ok");
    expect(other.state).toBe("registered");

    const p = peer();
    const conn = relay.open(p);
    relay.receive(conn, register("late"));
    expect(conn.state).toBe("registering");
    expect(p.frames.length).toBe(0);
    // A Ping before the answer: it must come after the RegistrationResponse.
    relay.receive(conn, encodeMessage({ type: "Ping", timestamp: 42n }));
    // The name is held here meanwhile: a second local "late" is refused at once.
    const dup = peer();
    relay.receive(relay.open(dup), register("late"));
    expect(dup.messages()).toEqual([{ type: "Error", message: "Instance name 'late' already in use" }]);
    await link.claims[1]!.answer("ok");
    expect(p.messages().map((m) => m.type)).toEqual(["RegistrationResponse", "Pong"]);
    expect(link.joinedNames).toEqual(["other", "late"]);
  });

  test("a claim another node won ends in the usual Error and close; nothing is announced", async () => {
    const link = fakeLink();
    const relay = makeRelay(link);
    const p = peer();
    relay.receive(relay.open(p), register("taken"));
    await link.claims[0]!.answer("taken");
    expect(p.messages()).toEqual([{ type: "Error", message: "Instance name 'taken' already in use" }]);
    expect(p.closed).toBe(true);
    expect(link.joinedNames).toEqual([]);
    expect(relay.sessions.size).toBe(0);
    expect(relay.stats.registrationsRejected.name_taken).toBe(1);
  });

  test("a connection gone before its claim is answered gives the name back", async () => {
    const link = fakeLink();
    const relay = makeRelay(link);
    const conn = relay.open(peer());
    relay.receive(conn, register("quitter"));
    relay.closed(conn, "closed");
    await link.claims[0]!.answer("ok");
    expect(link.released).toEqual(["quitter"]);
    expect(link.joinedNames).toEqual([]);
    expect(relay.sessions.size).toBe(0);
  });

  test(`remote members: listed to newcomers, announced, never sent to; their frames reach local members unchanged; \
leaving is announced`, async () => {
    const link = fakeLink();
    const relay = makeRelay(link);
    const watcherPeer = peer();
    const watcher = relay.open(watcherPeer);
    relay.receive(watcher, register("watcher", ["presence"]));
    await link.claims[0]!.answer("ok");
    const id = crypto.randomUUID();
    relay.remote.joined({
      node: "far",
      session: "open",
      id,
      name: "faraway",
      version: "0.1.0",
      connectedAt: 1_700_000_000_000,
      lastActivity: 1_700_000_000_000,
    });
    expect(watcherPeer.messages().at(-1)).toMatchObject({ type: "InstanceConnected", instance_name: "faraway" });

    const newcomerPeer = peer();
    relay.receive(relay.open(newcomerPeer), register("newcomer"));
    await link.claims[1]!.answer("ok");
    const response = newcomerPeer.messages()[0] as Extract<Message, { type: "RegistrationResponse" }>;
    expect(response.current_instances.map((i) => i.name)).toEqual(["watcher", "faraway"]);
    expect(stringifyUuid(response.current_instances[1]!.id)).toBe(id);

    // A local update goes to the local members and, once, to the cluster.
    relay.receive(watcher, update(watcher, 9));
    expect(link.published.length).toBe(1);
    const frame = encodeFrame({
      type: "StateBroadcast",
      source_instance_name: "faraway",
      timestamp: 5n,
      update_data: toByteArrayWire(Uint8Array.of(1, 2)),
    });
    const before = newcomerPeer.frames.length;
    relay.remote.frame("open", frame, "faraway-node:1", 1);
    // The very bytes that crossed the cluster, unchanged.
    expect(newcomerPeer.frames[before]).toBe(frame);
    expect(watcherPeer.frames.at(-1)).toBe(frame);

    relay.remote.left("open", id);
    expect(newcomerPeer.messages().at(-1)).toMatchObject({ type: "InstanceDisconnected", instance_name: "faraway" });
    expect([...relay.sessions.get("open")!.names].sort()).toEqual(["newcomer", "watcher"]);
    // Remote members never count against this node's --max-instances.
    expect(relay.instanceCount).toBe(2);
  });

  test(`an update from an instance alone here still goes to the cluster: \
someone may have joined elsewhere a moment ago`, async () => {
    const link = fakeLink();
    const relay = makeRelay(link);
    const conn = relay.open(peer());
    relay.receive(conn, register("alone"));
    await link.claims[0]!.answer("ok");
    relay.receive(conn, update(conn, 1));
    expect(link.published.length).toBe(1);
  });

  test("without a link, registration stays synchronous", () => {
    const relay = makeRelay();
    const conn = relay.open(peer());
    relay.receive(conn, register("solo"));
    expect(conn.state).toBe("registered");
  });
});

describe("cluster options", () => {
  test(`--cluster repeats and SOVA_RELAY_CLUSTER takes a comma-separated list; \
bad URLs are refused without echoing them`, () => {
    expect(resolveConfig(["--cluster", "nats://a:4222", "--cluster", "nats://b:4222"], {}).cluster).toEqual([
      "nats://a:4222",
      "nats://b:4222",
    ]);
    expect(resolveConfig([], { SOVA_RELAY_CLUSTER: "nats://a:4222, tls://b:4443" }).cluster).toEqual([
      "nats://a:4222",
      "tls://b:4443",
    ]);
    expect(resolveConfig([], {}).cluster).toEqual([]);
    expect(() => resolveConfig(["--cluster", "http://user:hunter2@x"], {})).toThrow(/expected nats:\/\/HOST:PORT/);
    try {
      resolveConfig(["--cluster", "http://user:hunter2@x"], {});
    } catch (error) {
      expect((error as Error).message).not.toContain("hunter2");
    }
  });
});
