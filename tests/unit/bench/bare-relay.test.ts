/**
 * The capacity scenario's end-to-end floor (bench/bare-relay.ts) must do the relay's job
 * for the generator, or its figures say nothing about the relay: the same broadcast bytes
 * to every other member of the sender's session and to no one else, the registration the
 * generator reads its id from, and nudges to the quiet, counted where the bench reads them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { connect, type RelayClient } from "../../../src/client/client.ts";
import { broadcastPrefix, encodeBroadcastFrame, toByteArrayWire } from "../../../src/protocol/messages.ts";
import { ROOT } from "../../support/paths.ts";

const bare = Bun.spawn(
  [process.execPath, join(ROOT, "bench", "bare-relay.ts"), "--http-port", "0", "--nudge-interval", "40"],
  {
    stdout: "pipe",
    stderr: "inherit",
  },
);
const clients: RelayClient[] = [];
afterAll(() => {
  for (const c of clients) c.close();
  bare.kill();
});

async function ports(): Promise<{ port: number; http: number }> {
  const reader = bare.stdout.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("bare relay ended before listening");
    text += new TextDecoder().decode(value);
    const m = /port (\d+) http (\d+)/.exec(text);
    if (m) {
      reader.releaseLock();
      return { port: Number(m[1]), http: Number(m[2]) };
    }
  }
}

const where = ports();

async function member(name: string, token: string): Promise<RelayClient> {
  const c = await connect({ host: "127.0.0.1", port: (await where).port });
  clients.push(c);
  const response = await c.register({ name, token });
  expect(response.success).toBe(true);
  expect(response.assigned_id?.length).toBe(16);
  return c;
}

describe("the capacity scenario's relay with no rules", () => {
  test("broadcasts the relay's bytes within a session only, and nudges the quiet", async () => {
    const [a, b, c] = [await member("a", "one"), await member("b", "one"), await member("c", "two")];
    const frames: Uint8Array[] = [];
    b.onFrame((body) => frames.push(new Uint8Array(body)));
    const data = Uint8Array.from({ length: 256 }, (_, i) => (i * 7) & 0xff);
    a.sendUpdate(data, 1_763_800_000_000n);
    const got = await b.next("StateBroadcast");
    expect(got.source_instance_name).toBe("a");
    const expected = encodeBroadcastFrame(broadcastPrefix("a"), 1_763_800_000_000n, toByteArrayWire(data));
    const body = Buffer.from(expected.subarray(4));
    expect(frames.some((f) => body.equals(f))).toBe(true);
    // A round trip to c after a's update: had c been sent the broadcast, it would have come first.
    await c.ping(7n);
    expect(c.unread.filter((m) => m.type === "StateBroadcast")).toEqual([]);
    expect(a.unread.filter((m) => m.type === "StateBroadcast")).toEqual([]);
    await c.next("Pong", { where: (m) => m.timestamp !== 7n });
    const status = (await (await fetch(`http://127.0.0.1:${(await where).http}/status`)).json()) as {
      totals: { nudges: number };
    };
    expect(status.totals.nudges).toBeGreaterThan(0);
  });
});
