/** Peers that misbehave on purpose, and cleanup for what a test opens. */
import { afterEach } from "bun:test";
import type { Socket } from "bun";
import type { RelayClient } from "../../src/client.ts";
import { frameOf } from "../../src/protocol/framing.ts";
import { encodeMessage, type Message } from "../../src/protocol/messages.ts";
import type { RelayHandle } from "./relay.ts";

export function registerFrame(name: string, extra: Record<string, unknown> = {}): Uint8Array {
  return frameOf(encodeMessage({ type: "RegisterInstance", instance_name: name, version: "0.1.0", session_token: null, capabilities: [], ...extra }));
}

/** An instance that registers and then never reads: its frames pile up at the relay. */
export async function connectSleeper(port: number, name = "sleeper"): Promise<Socket<undefined>> {
  const sleeper = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, close() {}, error() {} } });
  sleeper.write(registerFrame(name));
  sleeper.pause();
  return sleeper;
}

/**
 * Closes (or stops) everything passed to `keep` after each test of the file,
 * newest first, whatever the test's outcome.
 */
export function cleanupAfterEach(): <T extends RelayClient | RelayHandle>(x: T) => T {
  const open: Array<RelayClient | RelayHandle> = [];
  afterEach(async () => {
    for (const x of open.splice(0).reverse()) {
      if ("stop" in x) await x.stop();
      else x.close();
    }
  });
  return (x) => {
    open.push(x);
    return x;
  };
}

/**
 * Absence after a round trip: each client in turn (senders first, then
 * receivers) sends a Ping and gets its Pong; anything the relay sent a client
 * before that Pong has then arrived. Returns what is still unread, so a test
 * says `expect(await drained(a, b)).toEqual([])`.
 */
export async function drained(...clients: RelayClient[]): Promise<Message[]> {
  for (const c of clients) await c.ping(BigInt(Date.now()));
  return clients.flatMap((c) => c.unread);
}

/**
 * The same for a client over its rate limit, whose pings are dropped. A frame
 * header announcing more than any --max-message-size is answered with an Error
 * at once, before any rate limit is counted (PROTOCOL.md, Framing); once that
 * answer is in, whatever the relay sent before it has arrived. The connection
 * is of no further use: the relay skips the announced body.
 */
export async function drainedPastRateLimit(client: RelayClient): Promise<Message[]> {
  client.sendRaw(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
  await client.next("Error", { where: (m) => m.message.startsWith("Message too large") });
  return [...client.unread];
}
