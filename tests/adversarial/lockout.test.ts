/**
 * Slots cannot be held against players (issue 27, findings 1, 4, 7 and 9): what a
 * stranger, or one member of one ensemble, tried in order to keep players out,
 * over real sockets from several loopback addresses.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "../../src/client/client.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { connectFrom, holdSilent, type Holders } from "../support/from.ts";
import { cleanupAfterEach, registerFrame } from "../support/peers.ts";
import { startInProcess } from "../support/relay.ts";
import { openWs, tunnelTo } from "../support/transport.ts";

const keep = cleanupAfterEach();

const A = "ensemble-a-token-9fQ2xLm7";
const B = "ensemble-b-token-4Hk8pZw3";

/** A RegisterInstance from `from`, sent `delayMs` after connecting (a far venue); the relay's answer. */
async function registerFrom(port: number, from: string, name: string, token: string | null = null, delayMs = 0) {
  const peer = await connectFrom(port, from);
  if (delayMs > 0) await Bun.sleep(delayMs);
  peer.socket.write(registerFrame(name, { session_token: token }));
  const answer: Message = await peer.next().catch((e: Error) => ({ type: "Error", message: e.message }));
  return { peer, answer };
}

function stopAll(holders: Holders[]): void {
  for (const h of holders) h.stop();
}

describe("1: WebSocket handshake slots", () => {
  test(`two addresses holding every WebSocket handshake slot, reopening each as it is closed, \
keep neither WebSocket nor tunnel players out`, async () => {
    const relay = keep(await startInProcess(["--http-port", "any"]));
    const url = `ws://127.0.0.1:${relay.httpPort}/relay`;
    const holders = [
      holdSilent(relay.httpPort!, "127.0.0.2", 8, true),
      holdSilent(relay.httpPort!, "127.0.0.3", 8, true),
    ];
    const tunnel = tunnelTo(url);
    try {
      await Promise.all(holders.map((h) => h.ready));
      for (let i = 0; i < 5; i++) {
        const ws = await openWs(url);
        expect(ws.error).toBeNull();
        ws.send({
          type: "RegisterInstance",
          instance_name: `ws-player-${i}`,
          version: "0.1.0",
          session_token: null,
          capabilities: [],
        });
        expect((await ws.next()).type).toBe("RegistrationResponse");
        ws.ws.close();
        await ws.closed;
      }
      for (let i = 0; i < 3; i++) {
        const c = await connect({ port: tunnel.port });
        expect((await c.register({ name: `tunnel-player-${i}` })).success).toBe(true);
        c.close();
        await c.closed;
      }
      await relay.waitForEvent(
        "websocket_refused",
        (e) => e.reason === "handshake_limit" || e.reason === "first_frame_timeout",
      );
    } finally {
      stopAll(holders);
      tunnel.stop();
    }
  }, 30_000);
});

describe("7: TCP handshake slots", () => {
  test(`a flood of silent connections from 24 addresses cuts no player, \
not even one whose RegisterInstance comes 250 ms after connecting`, async () => {
    const relay = keep(await startInProcess(["--max-handshakes", "32"]));
    const flood = Array.from({ length: 24 }, (_, i) => holdSilent(relay.port, `127.0.1.${i + 1}`, 8));
    try {
      // The flood is at full churn: slots change hands hundreds of times.
      while (relay.server!.relay.stats.disconnects.handshake_limit < 500) await Bun.sleep(20);
      const players = await Promise.all(
        Array.from({ length: 8 }, (_, i) => registerFrom(relay.port, `127.0.2.${i + 1}`, `far-${i}`, null, 250)),
      );
      for (const p of players) expect(p.answer.type).toBe("RegistrationResponse");
      for (const p of players) p.peer.socket.destroy();
    } finally {
      stopAll(flood);
    }
  }, 30_000);
});

describe("4: instance slots", () => {
  test(`open session: one address registers all it may (20, an ensemble behind one NAT); \
a player from elsewhere still gets in`, async () => {
    const relay = keep(await startInProcess());
    const held = [];
    for (let i = 0; i < 20; i++) {
      const r = await registerFrom(relay.port, "127.0.0.2", `hog-${i}`);
      expect(r.answer.type).toBe("RegistrationResponse");
      held.push(r.peer);
    }
    const more = await registerFrom(relay.port, "127.0.0.2", "hog-20");
    expect(more.answer).toEqual({ type: "Error", message: "Maximum instances from this address (20) reached" });
    const player = await registerFrom(relay.port, "127.0.0.1", "player");
    expect(player.answer.type).toBe("RegistrationResponse");
    for (const p of [...held, player.peer]) p.socket.destroy();
  });

  test("two ensembles: a member of A cannot take B's slots", async () => {
    const relay = keep(await startInProcess(["--token", A, "--token", B]));
    const held = [];
    for (let i = 0; ; i++) {
      const r = await registerFrom(relay.port, "127.0.0.2", `a-${i}`, A);
      held.push(r.peer);
      if (r.answer.type !== "RegistrationResponse") {
        expect(r.answer).toEqual({ type: "Error", message: "Maximum instances in this session (20) reached" });
        expect(i).toBe(20);
        break;
      }
    }
    const player = await registerFrom(relay.port, "127.0.0.3", "b-player", B);
    expect(player.answer.type).toBe("RegistrationResponse");
    for (const p of [...held, player.peer]) p.socket.destroy();
  });

  test("a host raising --max-instances for three ensembles of 20 gets 20 for each, whatever the first does", async () => {
    const C = "ensemble-c-token-7Tn3vRq1";
    const relay = keep(await startInProcess(["--max-instances", "60", "--token", A, "--token", B, "--token", C]));
    const held = [];
    for (let i = 0; i < 21; i++) held.push(await registerFrom(relay.port, `127.0.3.${i + 1}`, `a-${i}`, A));
    expect(held.filter((r) => r.answer.type === "RegistrationResponse").length).toBe(20);
    for (const [token, at] of [
      [B, 4],
      [C, 5],
    ] as const)
      for (let i = 0; i < 20; i++) {
        const r = await registerFrom(relay.port, `127.0.${at}.${i + 1}`, `p-${i}`, token);
        expect(r.answer.type).toBe("RegistrationResponse");
        held.push(r);
      }
    for (const r of held) r.peer.socket.destroy();
  });
});

describe("9: /events slots", () => {
  test(`visitors from four addresses cannot take the operator's live page: \
slots are kept for loopback, and a visitor's stream gives way when even those are taken`, async () => {
    const relay = keep(await startInProcess(["--http-port", "any", "--trust-proxy", "127.0.0.1/32"]));
    const at = (from?: string) =>
      fetch(`http://127.0.0.1:${relay.httpPort}/events`, { headers: from ? { "X-Forwarded-For": from } : {} });
    const streams: Response[] = [];
    for (let v = 1; v <= 4; v++)
      for (let i = 0; i < 8; i++) {
        const r = await at(`198.51.100.${v}`);
        if (r.status === 200) streams.push(r);
        else expect(await r.text()).toContain("kept for the operator");
      }
    expect(streams.length).toBe(28);
    const mine = [];
    for (let i = 0; i < 5; i++) {
      const r = await at();
      expect(r.status).toBe(200);
      mine.push(r);
    }
    // The fifth of the operator's pages took the oldest visitor's slot: that stream ended.
    await streams[0]!.text();
    const metrics = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
    expect(metrics).toContain('sova_relay_events_closed_total{reason="operator"} 1');
    for (const r of [...streams, ...mine]) await r.body?.cancel().catch(() => {});
  });
});
