/** Peers that misbehave on purpose, and cleanup for what a test opens. */
import { afterEach } from "bun:test";
import type { Socket } from "bun";
import type { RelayClient } from "../../src/client/client.ts";
import { frameOf } from "../../src/protocol/framing.ts";
import { encodeMessage, type Message } from "../../src/protocol/messages.ts";
import type { RelayHandle } from "./relay.ts";

/** A RegisterInstance body as a Sova instance sends it, with `extra` fields over the defaults. */
export function registerBody(name: string, extra: Record<string, unknown> = {}): Uint8Array {
  return encodeMessage({
    type: "RegisterInstance",
    instance_name: name,
    version: "0.1.0",
    session_token: null,
    capabilities: [],
    ...extra,
  });
}

export function registerFrame(name: string, extra: Record<string, unknown> = {}): Uint8Array {
  return frameOf(registerBody(name, extra));
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

/** A nudge: a Pong carrying the relay's clock (ms since the epoch), not an answer to any Ping a test sent. */
export function isNudge(m: Message): boolean {
  return m.type === "Pong" && m.timestamp >= 1_000_000_000_000n;
}

/**
 * Shows that nothing more is on its way to these clients: a round trip (Ping, then
 * its Pong) through each, then what is still unread. Nudges are left out.
 */
export async function drained(...clients: Array<Pick<RelayClient, "ping" | "unread">>): Promise<Message[]> {
  for (const c of clients) await c.ping(BigInt(Date.now()));
  return clients.flatMap((c) => c.unread.filter((m) => !isNudge(m)));
}

/**
 * The same for a client over its rate limit, whose pings (and oversized frames) are
 * dropped. The relay nudges an instance only once nothing has been queued for it for
 * the nudge interval, so once a nudge arrives, whatever the relay sent before has
 * arrived. Needs nudges on (the default; the contract suite's blocks turn them on by flag).
 * A nudge already unread proves nothing about what was sent since (on a busy machine one
 * can arrive with the very frames before it): only one arriving after the call ends the wait,
 * and with `stampedFrom` (ms since the epoch) only one the relay stamped at or after it.
 */
export async function drainedPastRateLimit(
  client: Pick<RelayClient, "next" | "unread">,
  stampedFrom = 0,
): Promise<Message[]> {
  const earlier = new Set(client.unread.filter(isNudge));
  const from = BigInt(stampedFrom);
  await client.next("Pong", { where: (m) => isNudge(m) && !earlier.has(m) && m.timestamp >= from });
  return client.unread.filter((m) => !isNudge(m));
}
