/**
 * The relay's WebSocket endpoint (/relay on the HTTP listener), reached
 * directly: it shares sessions with TCP, refuses what it cannot carry with a
 * clear code, applies the guard to the real client address, and believes
 * X-Forwarded-For only from --trust-proxy.
 */
import { describe, expect, test } from "bun:test";
import { updateValues } from "../../src/client/client.ts";
import { toByteArrayWire, type Message } from "../../src/protocol/messages.ts";
import { cleanupAfterEach } from "../support/peers.ts";
import { ClientPool, startInProcess, type RelayHandle } from "../support/relay.ts";
import { openWs, type WsPeer } from "../support/transport.ts";

const keep = cleanupAfterEach();

async function relayWithWs(flags: string[] = []): Promise<RelayHandle> {
  return keep(await startInProcess([...flags, "--http-port", "any"]));
}

const url = (r: RelayHandle, path = "/relay") => `ws://127.0.0.1:${r.httpPort}${path}`;

function register(peer: WsPeer, name: string): void {
  peer.send({ type: "RegisterInstance", instance_name: name, version: "0.1.0", session_token: null, capabilities: [] });
}

async function registered(peer: WsPeer, name: string): Promise<Extract<Message, { type: "RegistrationResponse" }>> {
  register(peer, name);
  const m = await peer.next();
  if (m.type !== "RegistrationResponse") throw new Error(`expected RegistrationResponse, got ${JSON.stringify(m)}`);
  return m;
}

/** The address the relay holds for a registered instance (what the guard, logs and page use). */
function addressOf(r: RelayHandle, name: string): string | undefined {
  return [...r.server!.relay.connections].find((c) => c.instance?.name === name)?.peer.address;
}

async function metrics(r: RelayHandle): Promise<string> {
  return (await fetch(`http://127.0.0.1:${r.httpPort}/metrics`)).text();
}

describe("websocket: an instance like any other", () => {
  test(`a WebSocket instance and a TCP instance share a session, both ways, \
and metrics count each transport`, async () => {
    const relay = await relayWithWs();
    const pool = new ClientPool(() => relay.port);
    try {
      const tcp = await pool.register("tcp-one", { capabilities: ["presence"] });
      const ws = await openWs(url(relay));
      const reg = await registered(ws, "ws-one");
      expect(reg.current_instances.map((i) => i.name)).toEqual(["tcp-one"]);
      expect((await tcp.next("InstanceConnected")).instance_name).toBe("ws-one");
      tcp.sendUpdate(Uint8Array.of(1, 2, 3), 42n);
      const got = await ws.next();
      expect(got.type).toBe("StateBroadcast");
      if (got.type !== "StateBroadcast") throw new Error("unreachable");
      expect(got.source_instance_name).toBe("tcp-one");
      expect([...updateValues(got)]).toEqual([1, 2, 3]);
      ws.send({
        type: "StateUpdate",
        source_instance_id: reg.assigned_id!,
        timestamp: 7n,
        update_data: toByteArrayWire(Uint8Array.of(9)),
      });
      const back = await tcp.next("StateBroadcast");
      expect(back.source_instance_name).toBe("ws-one");
      expect(back.timestamp).toBe(7n);
      const text = await metrics(relay);
      expect(text).toContain('sova_relay_transport_connections_open{transport="websocket"} 1');
      expect(text).toContain('sova_relay_transport_connections_open{transport="tcp"} 1');
      ws.ws.close(1000);
      expect((await tcp.next("InstanceDisconnected")).instance_name).toBe("ws-one");
      await relay.waitForEvent("disconnected", { instance: "ws-one", reason: "closed" });
    } finally {
      pool.closeAll();
    }
  });

  test("the handshake timeout and the registration rules apply as on TCP", async () => {
    const relay = await relayWithWs(["--handshake-timeout", "0.3", "--token", "ws-room-6f1c2a9e84d3b705"]);
    const bad = await openWs(url(relay));
    register(bad, "no-token");
    const err = await bad.next();
    expect(err).toEqual({ type: "Error", message: "Invalid session token" });
    expect((await bad.closed).code).toBe(1000);
    const silent = await openWs(url(relay));
    expect((await silent.closed).code).toBe(1000);
    await relay.waitForEvent("handshake_timeout");
  });
});

describe("websocket: a peer that stops reading", () => {
  test("is cut as a slow consumer at --max-pending-bytes, while a TCP reader gets everything", async () => {
    const relay = await relayWithWs(["--max-pending-bytes", "262144", "--rate-limit", "0"]);
    const pool = new ClientPool(() => relay.port);
    try {
      const sender = await pool.register("sender");
      const reader = await pool.register("reader");
      const sleeper = await openWs(url(relay));
      await registered(sleeper, "ws-sleeper");
      sleeper.ws.pause();
      const payload = new Uint8Array(100_000).fill(1);
      for (let i = 0; i < 80; i++) {
        sender.sendUpdate(payload, BigInt(i));
        expect((await reader.next("StateBroadcast")).timestamp).toBe(BigInt(i));
      }
      expect((await reader.next("InstanceDisconnected", { timeoutMs: 10_000 })).instance_name).toBe("ws-sleeper");
      const cut = await relay.waitForEvent("slow_consumer", { instance: "ws-sleeper" });
      expect(Number(cut.pending_bytes)).toBeLessThanOrEqual(262144);
      sleeper.ws.terminate();
    } finally {
      pool.closeAll();
    }
  }, 20_000);
});

describe("websocket: pre-registration bounds", () => {
  test("a first message over --handshake-max-bytes gets 'Message too large' and a close, as on TCP", async () => {
    const relay = await relayWithWs(["--handshake-max-bytes", "256"]);
    const ws = await openWs(url(relay));
    ws.ws.send(new Uint8Array(1000));
    expect(await ws.next()).toEqual({ type: "Error", message: "Message too large: 1000 bytes (max: 256)" });
    expect((await ws.closed).code).toBe(1000);
    // After registering, the full bound applies.
    const ok = await openWs(url(relay));
    await registered(ok, "big-after");
    ok.ws.send(new Uint8Array(1000));
    expect((await ok.next()).type).toBe("Error");
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe("websocket: refusals", () => {
  test("a text message is refused with 1003 and a reason, counted and logged", async () => {
    const relay = await relayWithWs();
    const ws = await openWs(url(relay));
    ws.ws.send("hello");
    const closed = await ws.closed;
    expect(closed.code).toBe(1003);
    expect(closed.reason).toContain("binary messages only");
    await relay.waitForEvent("websocket_refused", { ip: "127.0.0.1", reason: "text_message" });
    expect(await metrics(relay)).toContain('sova_relay_websocket_refusals_total{reason="text_message"} 1');
  });

  test("a message over --max-message-size is closed with 1009 before it is held, counted as oversized", async () => {
    const relay = await relayWithWs(["--max-message-size", "4096"]);
    const ws = await openWs(url(relay));
    await registered(ws, "big");
    ws.ws.send(new Uint8Array(4097));
    expect((await ws.closed).code).toBe(1009);
    await relay.waitForEvent("websocket_refused", { reason: "oversized" });
    const text = await metrics(relay);
    expect(text).toContain('sova_relay_drops_total{reason="oversized"} 1');
    expect(text).toContain('sova_relay_websocket_refusals_total{reason="oversized"} 1');
    // A message of exactly the bound is carried (and answered: it is not MessagePack).
    const ok = await openWs(url(relay));
    await registered(ok, "edge");
    ok.ws.send(new Uint8Array(4096));
    expect((await ok.next()).type).toBe("Error");
  });

  test(`an upgrade on another path is refused with 404; \
a plain GET on /relay with 426 saying what it takes`, async () => {
    const relay = await relayWithWs();
    const wrong = await openWs(url(relay, "/ws"));
    expect(wrong.error).toContain("Expected 101 status code: 404");
    const plain = await fetch(`http://127.0.0.1:${relay.httpPort}/relay`);
    expect(plain.status).toBe(426);
    expect(await plain.text()).toContain("takes WebSocket connections only");
    // The status page is still there beside it.
    expect((await fetch(`http://127.0.0.1:${relay.httpPort}/healthz`)).status).toBe(200);
  });

  test(`the guard applies: \
past --max-connections-per-ip the upgrade gets 429, and TCP and WebSocket count together`, async () => {
    const relay = await relayWithWs(["--max-connections-per-ip", "2"]);
    const pool = new ClientPool(() => relay.port);
    try {
      await pool.connect();
      const first = await openWs(url(relay));
      expect(first.error).toBeNull();
      const second = await openWs(url(relay));
      expect(second.error).toContain("Expected 101 status code: 429");
      await relay.waitForEvent("connection_refused", { ip: "127.0.0.1", reason: "per_ip_limit" });
      first.ws.close();
      await first.closed;
      await relay.waitForEvent("connection_closed", { ip: "127.0.0.1" });
      const third = await openWs(url(relay));
      expect(third.error).toBeNull();
    } finally {
      pool.closeAll();
    }
  });
});

describe("websocket: before registration", () => {
  test(`at most 16 WebSocket handshakes at once (Bun holds a whole message until it is complete): \
the next upgrade gets 503`, async () => {
    const relay = await relayWithWs(["--max-connections-per-ip", "100", "--max-handshakes-per-ip", "100"]);
    const lurkers = await Promise.all(Array.from({ length: 16 }, () => openWs(url(relay))));
    for (const l of lurkers) expect(l.error).toBeNull();
    const refused = await openWs(url(relay));
    expect(refused.error).toContain("Expected 101 status code: 503");
    await relay.waitForEvent("websocket_refused", { reason: "handshake_limit" });
    for (const l of lurkers) l.ws.close();
    await Promise.all(lurkers.map((l) => l.closed));
  });
});

describe("websocket: --trust-proxy", () => {
  test("honoured: a trusted proxy's X-Forwarded-For names the client, for the guard and the logs", async () => {
    const relay = await relayWithWs(["--trust-proxy", "127.0.0.0/8", "--deny", "203.0.113.0/24"]);
    const denied = await openWs(url(relay), { "X-Forwarded-For": "203.0.113.7" });
    expect(denied.error).toContain("Expected 101 status code: 403");
    await relay.waitForEvent("connection_refused", { ip: "203.0.113.7", reason: "denied" });
    const allowed = await openWs(url(relay), { "X-Forwarded-For": "198.51.100.9" });
    await registered(allowed, "behind-proxy");
    expect(addressOf(relay, "behind-proxy")).toBe("198.51.100.9");
    // RFC 7239 Forwarded works too.
    const fwd = await openWs(url(relay), { Forwarded: 'for="[2001:db8::5]:4711";proto=https' });
    await registered(fwd, "forwarded");
    expect(addressOf(relay, "forwarded")).toBe("2001:db8::5");
  });

  test("ignored without --trust-proxy: the header cannot dodge --deny nor borrow an address", async () => {
    const relay = await relayWithWs(["--deny", "198.51.100.0/24"]);
    const spoof = await openWs(url(relay), { "X-Forwarded-For": "203.0.113.7" });
    await registered(spoof, "spoofer");
    expect(addressOf(relay, "spoofer")).toBe("127.0.0.1");
    expect(relay.logs.some((l) => l.includes("203.0.113.7"))).toBe(false);
  });
});
