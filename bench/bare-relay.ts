/**
 * The end-to-end floor of the capacity scenario: a relay with no rules, run in the
 * same limit and driven by the same generator as the relay, so the latency it
 * measures is what the machine, the kernel's loopback writes and the generator cost
 * by themselves. It registers whoever asks into the session its token names (no
 * names or tokens checked), answers pings, turns each StateUpdate into a StateBroadcast for every
 * other instance, merges a peer's frames into one write per turn of the event loop
 * as the relay does, and nudges (a Pong to an instance sent nothing for
 * `--nudge-interval` ms, swept every 10 ms). No bounds, no counters, no history.
 *
 * Takes the relay's flags, reads `--http-port` (serving the nudge count as /status
 * does) and `--nudge-interval`, ignores the rest; prints `port N http M`. Started by
 * bench/capacity.ts.
 */
import type { Socket } from "bun";
import { createFrameReader, type FrameReader } from "../src/protocol/framing.ts";
import {
  broadcastPrefix,
  decodeMessage,
  decodeStateUpdate,
  encodeBroadcastFrame,
  encodeFrame,
  peekVariant,
  registrationResponseHead,
} from "../src/protocol/messages.ts";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const at = args.lastIndexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const nudgeMs = flag("--nudge-interval", 40);
const SWEEP_MS = 10;

interface Peer {
  socket: Socket<Peer>;
  reader: FrameReader;
  prefix: Uint8Array | null;
  session: Peer[];
  queue: Uint8Array[];
  queued: number;
  lastSent: number;
}

const sessions = new Map<string, Peer[]>();
const NO_SESSION: Peer[] = [];
let dirty: Peer[] = [];
let flushScheduled = false;
let merge = new Uint8Array(64 * 1024);
let nudges = 0;

function flush(): void {
  flushScheduled = false;
  const peers = dirty;
  dirty = [];
  for (const peer of peers) {
    if (merge.length < peer.queued) merge = new Uint8Array(peer.queued);
    let at = 0;
    for (const frame of peer.queue) {
      merge.set(frame, at);
      at += frame.length;
    }
    peer.queue.length = 0;
    peer.queued = 0;
    // A short write would lose bytes here; the figures are only good while there are none.
    if (peer.socket.write(merge.subarray(0, at)) < at) throw new Error("bare relay: a short write");
  }
}

function send(peer: Peer, frame: Uint8Array, now: number): void {
  if (peer.queue.push(frame) === 1) dirty.push(peer);
  peer.queued += frame.length;
  peer.lastSent = now;
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function receive(peer: Peer, body: Uint8Array): void {
  const now = Date.now();
  const variant = peekVariant(body);
  if (variant === "StateUpdate" && peer.prefix !== null) {
    const update = decodeStateUpdate(body)!;
    const frame = encodeBroadcastFrame(peer.prefix, update.timestamp, update.update_data);
    for (const other of peer.session) if (other !== peer) send(other, frame, now);
  } else if (variant === "RegisterInstance") {
    const msg = decodeMessage(body);
    if (msg.type !== "RegisterInstance") return;
    peer.prefix = broadcastPrefix(msg.instance_name);
    const token = msg.session_token ?? "";
    const session = sessions.get(token) ?? [];
    sessions.set(token, session);
    session.push(peer);
    peer.session = session;
    send(peer, registrationResponseHead("Registered", crypto.getRandomValues(new Uint8Array(16)), 0, 0), now);
  } else if (variant === "Ping") {
    const msg = decodeMessage(body);
    if (msg.type === "Ping") send(peer, encodeFrame({ type: "Pong", timestamp: msg.timestamp }), now);
  }
}

const listener = Bun.listen<Peer>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(socket) {
      const peer: Peer = {
        socket,
        reader: null!,
        prefix: null,
        session: NO_SESSION,
        queue: [],
        queued: 0,
        lastSent: Date.now(),
      };
      peer.reader = createFrameReader(1 << 20, { frame: (body) => receive(peer, body), oversized() {} });
      socket.data = peer;
    },
    data(socket, chunk) {
      socket.data.reader.push(chunk);
    },
    close(socket) {
      const { session } = socket.data;
      const at = session.indexOf(socket.data);
      if (at >= 0) session.splice(at, 1);
    },
  },
});

if (nudgeMs > 0)
  setInterval(() => {
    const now = Date.now();
    let pong: Uint8Array | null = null;
    for (const session of sessions.values())
      for (const peer of session) {
        if (now - peer.lastSent < nudgeMs) continue;
        pong ??= encodeFrame({ type: "Pong", timestamp: BigInt(now) });
        send(peer, pong, now);
        nudges++;
      }
  }, SWEEP_MS);

const http = Bun.serve({
  hostname: "127.0.0.1",
  port: flag("--http-port", 0),
  fetch: () => Response.json({ totals: { nudges } }),
});
console.log(`port ${listener.port} http ${http.port}`);

// Ended by the bench with SIGTERM: exit as the relay does, so `bun --cpu-prof` can write its profile.
process.on("SIGTERM", () => process.exit(0));
