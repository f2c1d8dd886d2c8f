/**
 * The shutdown's flush, over each transport: it waits for queued frames to go
 * out, and ends as soon as they have, whatever the transport. A WebSocket
 * peer's outbox once told only its own endpoint when it emptied, so a shutdown
 * with a WebSocket peer behind waited out its whole timeout and reported frames
 * lost that had all been sent.
 */
import { describe, expect, test } from "bun:test";
import { decodeMessage, type Message } from "../../src/protocol/messages.ts";
import { connectRaw } from "../support/raw.ts";
import { registerFrame, cleanupAfterEach } from "../support/peers.ts";
import { ClientPool, startInProcess, type RelayHandle } from "../support/relay.ts";
import { openWs } from "../support/transport.ts";

const keep = cleanupAfterEach();

const UPDATES = 20;
/** About 1 MB a frame: update_data values under 128 take one byte each. */
const PAYLOAD = new Uint8Array(1_000_000).fill(7);
/** Long enough that waiting it out cannot pass for catching up. */
const SHUTDOWN_TIMEOUT_S = 10;

/** A registered peer that stops reading until `resume`, and counts the broadcasts it then gets. */
interface Lagger {
  pause(): void;
  resume(): void;
  /** Resolves with every message received, once the relay has closed the connection. */
  received(): Promise<Message[]>;
}

async function tcpLagger(relay: RelayHandle): Promise<Lagger> {
  const raw = await connectRaw(relay.port);
  raw.write(registerFrame("lagger"));
  expect((await raw.next()).type).toBe("RegistrationResponse");
  return {
    pause: () => raw.socket.pause(),
    resume: () => raw.socket.resume(),
    received: async () => {
      await raw.closed;
      return raw.frames;
    },
  };
}

async function wsLagger(relay: RelayHandle): Promise<Lagger> {
  const peer = await openWs(`ws://127.0.0.1:${relay.httpPort}/relay`);
  peer.send({
    type: "RegisterInstance",
    instance_name: "lagger",
    version: "0.1.0",
    session_token: null,
    capabilities: [],
  });
  expect((await peer.next()).type).toBe("RegistrationResponse");
  const got: Message[] = [];
  peer.ws.addEventListener("message", (ev) => {
    got.push(decodeMessage(new Uint8Array(ev.data as ArrayBuffer), { extensions: true }));
  });
  return {
    pause: () => void peer.ws.pause(),
    resume: () => void peer.ws.resume(),
    received: async () => {
      await peer.closed;
      return got;
    },
  };
}

const transports: Array<[string, (r: RelayHandle) => Promise<Lagger>]> = [
  ["TCP", tcpLagger],
  ["WebSocket", wsLagger],
];

describe("shutdown with a peer far behind", () => {
  for (const [name, lagger] of transports) {
    test(`${name}: a peer 16 MB behind that catches up ends the flush at once, flushed: true, everything delivered`, async () => {
      const relay = keep(
        await startInProcess([
          "--http-port",
          "any",
          "--shutdown-timeout",
          String(SHUTDOWN_TIMEOUT_S),
          "--max-pending-bytes",
          String(64 * 1024 * 1024),
          "--max-total-pending-bytes",
          String(256 * 1024 * 1024),
        ]),
      );
      const pool = new ClientPool(() => relay.port);
      try {
        const behind = await lagger(relay);
        const sender = await pool.register("sender");
        behind.pause();
        for (let i = 0; i < UPDATES; i++) sender.sendUpdate(PAYLOAD, BigInt(i + 1));
        // The Pong comes after every update was handled, so all of them are queued for the lagger by now.
        await sender.ping(0n, 10_000);
        const conn = [...relay.server!.relay.connections].find((c) => c.instance?.name === "lagger")!;
        expect(conn.peer.pendingBytes).toBeGreaterThan(8 * 1024 * 1024);

        const shutdown = relay.server!.shutdown("test");
        behind.resume();
        const complete = await relay.waitForEvent("shutdown_complete", undefined, (SHUTDOWN_TIMEOUT_S + 5) * 1000);
        await shutdown;
        expect(complete.flushed).toBe(true);
        const broadcasts = (await behind.received()).filter((m) => m.type === "StateBroadcast");
        expect(broadcasts.map((m) => (m.type === "StateBroadcast" ? m.timestamp : 0n))).toEqual(
          Array.from({ length: UPDATES }, (_, i) => BigInt(i + 1)),
        );
      } finally {
        pool.closeAll();
      }
    }, 40_000);
  }
});
