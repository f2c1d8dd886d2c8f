/**
 * A relay with something in it, built in process without a socket, for the
 * pages that read what the code serves (`/status` fields, metric families):
 * one registered instance, a session with history, and a cluster status, so
 * every field and family shows.
 */
import { createHistory } from "../../src/core/history.ts";
import { createRelay, inertPeer } from "../../src/core/index.ts";
import type { StatusContext } from "../../src/http/status.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { encodeMessage } from "../../src/protocol/messages.ts";

const peer = inertPeer("203.0.113.7", 50_000);

export function sampleContext(): StatusContext {
  const history = createHistory({ maxEntries: 1000, maxBytes: 16 << 20, maxAgeMs: 0 });
  const relay = createRelay(
    {
      expectedVersion: "0.1.0",
      maxInstances: 20,
      rateLimit: 1000,
      maxMessageSize: 1 << 20,
      tokens: [],
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      history,
    },
    silentLogger,
  );
  const conn = relay.open(peer);
  relay.receive(
    conn,
    encodeMessage({
      type: "RegisterInstance",
      instance_name: "alice",
      version: "0.1.0",
      session_token: null,
      capabilities: [],
    }),
  );
  if (relay.instanceCount !== 1) throw new Error("the sample relay did not register its instance");
  return {
    relay,
    version: "0.1.0",
    startedAt: Date.now(),
    stopping: () => false,
    history,
    cluster: () => ({
      node: "a",
      connected: true,
      names_shared: true,
      session_secret: "agreed",
      nodes: [{ name: "b", members: 1, last_heard_ms: 120 }],
      published: 0,
      received: 0,
      gaps: { b: 0 },
      unsent: 0,
      foreign: 0,
      nodes_down: 0,
      nodes_refused: 0,
      name_conflicts: 0,
      disconnects: 0,
      history_pending_bytes: 0,
    }),
    storage: () => ({ degraded: false, reason: null, writeFailures: 0 }),
    descriptors: () => ({ limit: 65536, open: 40, acceptFailingSeconds: 0, waiting: 0 }),
  };
}
