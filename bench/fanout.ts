/**
 * `npm run bench -- --scenario fanout`: the relay's own work for one beat of a big ensemble, without the
 * kernel. k members of one session each send one 256-byte edit in one turn of the event loop; the relay as
 * the host builds it (buildRelay: its rules, turns, outboxes) relays them to sinks that take every byte at
 * once, and the time from the first edit read to the last write is one beat. Beside it, the same beat done
 * with no rules: decode, encode the broadcast, a list of frames per member, one merged copy per member
 * (what bench/bare-relay.ts does between its reads and writes).
 *
 * The capacity scenario cannot show this part: at k = 200 a beat's writes cost the relay ten times
 * as much CPU in the kernel, and the machine's noise moves its p99 by more than this whole figure.
 */
import type { Connection } from "../src/core/index.ts";
import { resolveConfig } from "../src/host/config.ts";
import { buildRelay } from "../src/host/setup.ts";
import { createLogger } from "../src/lib/log.ts";
import { createOutbox } from "../src/lib/outbox.ts";
import {
  broadcastPrefix,
  decodeMessage,
  encodeBroadcastFrame,
  encodeMessage,
  type Uuid,
  toByteArrayWire,
} from "../src/protocol/messages.ts";
import { outboxPeer } from "../tests/support/fake-peer.ts";

/**
 * The relay before a session's broadcasts were queued per turn (0122e14), this scenario, 6 runs, 2026-12-03:
 * ms per beat (no rules, same runs: 0.65-0.75 and 1.83-2.32).
 */
export const FANOUT_BEFORE_MS: Record<number, string> = { 100: "1.58-1.83", 200: "3.10-5.85" };

const PAYLOAD = new Uint8Array(256).map((_, i) => (i * 7919 + 13) & 0xff);

interface Member {
  conn: Connection;
  id: Uuid;
  bytes: number;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Between beats the relay idles, as between a session's beats: its records are not all in cache. */
const GAP_MS = 5;

/** k members registered with the relay as the host builds it, their writes counted. */
async function relayOf(k: number) {
  const config = resolveConfig(["--host", "127.0.0.1", "--port", "any", "--max-instances", String(k + 10)], {});
  const { relay } = buildRelay(config, createLogger({ level: "error", format: "json", write: () => {} }));
  const members: Member[] = [];
  for (let i = 0; i < k; i++) {
    let first: Uint8Array | null = null;
    const member = { bytes: 0 } as Member;
    const outbox = createOutbox(
      {
        write(b) {
          first ??= b.slice();
          member.bytes += b.length;
          return b.length;
        },
        end() {},
      },
      { maxPendingBytes: config.maxPendingBytes },
    );
    const peer = outboxPeer(outbox, `10.0.${i >> 8}.${i & 0xff}`, 1000 + i);
    member.conn = relay.open(peer);
    relay.receive(
      member.conn,
      encodeMessage({
        type: "RegisterInstance",
        instance_name: `p${i}`,
        version: config.expectedVersion,
        session_token: null,
        capabilities: [],
      }),
    );
    await nextTurn();
    const answer = decodeMessage(first!.subarray(4));
    if (answer.type !== "RegistrationResponse" || !answer.assigned_id) throw new Error(`p${i} not registered`);
    member.id = answer.assigned_id;
    members.push(member);
  }
  return { relay, members };
}

function updateOf(id: Uuid): Uint8Array {
  return encodeMessage({
    type: "StateUpdate",
    source_instance_id: id,
    timestamp: 1n,
    update_data: toByteArrayWire(PAYLOAD),
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

export interface FanoutResult {
  k: number;
  relayMs: number;
  noRulesMs: number;
  /** Bytes the first member got from the relay per beat, and what the k - 1 others' broadcasts make. */
  bytesPerMember: number;
  expectedBytesPerMember: number;
  deliveries: number;
}

/** Median ms per beat over `beats` measured beats (after as many to warm up), the relay and no rules. */
export async function fanout(k: number, beats: number): Promise<FanoutResult> {
  const { relay, members } = await relayOf(k);
  const frames = members.map((m) => updateOf(m.id));
  const relayTimes: number[] = [];
  const deliveriesBefore = relay.stats.deliveries;
  const bytesBefore = members[0]!.bytes;
  for (let beat = 0; beat < 2 * beats; beat++) {
    const t0 = performance.now();
    for (let i = 0; i < k; i++) relay.receive(members[i]!.conn, frames[i]!);
    await nextTurn();
    if (beat >= beats) relayTimes.push(performance.now() - t0);
    await Bun.sleep(GAP_MS);
  }
  const bytesPerMember = (members[0]!.bytes - bytesBefore) / (2 * beats);
  const deliveries = relay.stats.deliveries - deliveriesBefore;
  relay.beginShutdown();
  relay.closeAll();

  const prefixes = members.map((_, i) => broadcastPrefix(`p${i}`));
  const queues: Uint8Array[][] = members.map(() => []);
  let merge = new Uint8Array(0);
  const noRulesTimes: number[] = [];
  for (let beat = 0; beat < 2 * beats; beat++) {
    const t0 = performance.now();
    for (let i = 0; i < k; i++) {
      const msg = decodeMessage(frames[i]!);
      if (msg.type !== "StateUpdate") throw new Error(msg.type);
      const frame = encodeBroadcastFrame(prefixes[i]!, msg.timestamp, msg.update_data);
      for (let j = 0; j < k; j++) if (j !== i) queues[j]!.push(frame);
    }
    for (const queue of queues) {
      let at = 0;
      for (const f of queue) at += f.length;
      if (merge.length < at) merge = new Uint8Array(at);
      at = 0;
      for (const f of queue) {
        merge.set(f, at);
        at += f.length;
      }
      queue.length = 0;
    }
    if (beat >= beats) noRulesTimes.push(performance.now() - t0);
    await Bun.sleep(GAP_MS);
  }
  let expected = 0;
  for (let i = 1; i < k; i++) expected += encodeBroadcastFrame(prefixes[i]!, 1n, toByteArrayWire(PAYLOAD)).length;
  return {
    k,
    relayMs: median(relayTimes),
    noRulesMs: median(noRulesTimes),
    bytesPerMember,
    expectedBytesPerMember: expected,
    deliveries,
  };
}
