/**
 * What nudges cost and buy (issue 13): the relay's CPU and the bytes it sends per
 * second to idle instances with nudges on and off; how long an edit made in a quiet
 * duo waits with today's client's locking (the test double's habits); and the first
 * update of a connection from a client that writes its length prefix and body in two
 * writes with Nagle on (the 40 ms delayed-ACK wait a lone-header Pong avoids).
 */
import { connect, registerMessage } from "../src/client/client.ts";
import { createFrameReader } from "../src/protocol/framing.ts";
import { decodeMessage, encodeMessage, toByteArrayWire, type Message } from "../src/protocol/messages.ts";
import { connectSovaDouble } from "../tests/support/sova-double.ts";
import { connectPool } from "./load.ts";
import { launchRelay } from "./relay-process.ts";

export interface IdleCost {
  instances: number;
  nudgeMs: number;
  cpuPercent: number | null;
  bytesPerSec: number;
  framesPerSec: number;
}

export async function idleCost(
  binary: string | null,
  instances: number,
  nudgeMs: number,
  seconds: number,
): Promise<IdleCost> {
  const relay = await launchRelay({ binary, flags: ["--max-instances", "5000", "--nudge-interval", String(nudgeMs)] });
  try {
    const pool = await connectPool(relay, instances);
    let bytes = 0;
    let frames = 0;
    await Bun.sleep(1000);
    pool.onBroadcast = (_i, body) => {
      bytes += body.length + 4;
      frames++;
    };
    const cpu0 = relay.cpuSeconds();
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const cpu1 = relay.cpuSeconds();
    pool.close();
    return {
      instances,
      nudgeMs,
      cpuPercent: cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) / elapsed) * 100,
      bytesPerSec: bytes / elapsed,
      framesPerSec: frames / elapsed,
    };
  } finally {
    await relay.stop();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

/** Edits at random moments in a quiet duo of doubles: ms from the edit to the other's receipt. */
export async function quietEditWait(
  binary: string | null,
  nudgeMs: number,
  edits: number,
): Promise<{ p50: number; p99: number; max: number }> {
  const relay = await launchRelay({ binary, flags: ["--nudge-interval", String(nudgeMs)] });
  try {
    const a = await connectSovaDouble(relay.port, "a");
    const b = await connectSovaDouble(relay.port, "b");
    const waits: number[] = [];
    for (let i = 0; i < edits; i++) {
      await Bun.sleep(Math.random() * 100);
      const t0 = performance.now();
      const t = BigInt(i);
      await a.edit(Uint8Array.of(i & 0xff), t);
      await b.handledWhere((m) => m.type === "StateBroadcast" && m.timestamp === t);
      waits.push(performance.now() - t0);
    }
    a.close();
    b.close();
    waits.sort((x, y) => x - y);
    return { p50: percentile(waits, 0.5), p99: percentile(waits, 0.99), max: waits.at(-1)! };
  } finally {
    await relay.stop();
  }
}

/**
 * A fresh connection's first update, prefix and body in two writes with Nagle on (as
 * today's client writes them, but without its lock, so it runs with nudges off too):
 * ms until the other side has it.
 */
export async function firstUpdate(
  binary: string | null,
  nudgeMs: number,
  trials: number,
): Promise<{ p50: number; p99: number }> {
  const relay = await launchRelay({ binary, flags: ["--nudge-interval", String(nudgeMs)] });
  try {
    const receiver = await connect({ port: relay.port });
    await receiver.register({ name: "receiver" });
    const times: number[] = [];
    for (let i = 0; i < trials; i++) {
      const responses: Message[] = [];
      const got = Promise.withResolvers<void>();
      const reader = createFrameReader(1 << 20, {
        frame(body) {
          responses.push(decodeMessage(body));
          got.resolve();
        },
        oversized() {},
      });
      const socket = await Bun.connect({
        hostname: "127.0.0.1",
        port: relay.port,
        socket: { data: (_s, chunk) => reader.push(chunk), close() {}, error() {} },
      });
      socket.setNoDelay(false);
      const twoWrites = (msg: Message) => {
        const body = encodeMessage(msg);
        const head = new Uint8Array(4);
        new DataView(head.buffer).setUint32(0, body.length);
        socket.write(head);
        socket.write(body);
      };
      twoWrites(registerMessage({ name: `first${i}` }));
      await got.promise;
      const response = responses[0]!;
      if (response.type !== "RegistrationResponse" || !response.assigned_id) throw new Error("registration failed");
      const t = BigInt(1_000_000 + i);
      const t0 = performance.now();
      twoWrites({
        type: "StateUpdate",
        source_instance_id: response.assigned_id,
        timestamp: t,
        update_data: toByteArrayWire(Uint8Array.of(1, 2, 3)),
      });
      await receiver.next("StateBroadcast", { where: (m) => m.timestamp === t });
      times.push(performance.now() - t0);
      socket.end();
      await receiver.next("InstanceDisconnected", { where: (m) => m.instance_name === `first${i}` });
    }
    receiver.close();
    times.sort((x, y) => x - y);
    return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
  } finally {
    await relay.stop();
  }
}
