/**
 * Players that edit at a steady pace, each edit numbered, through Sova's own
 * client habits (tests/support/sova-double.ts): what the resumption tests and
 * the `resume` scenario count as lost, repeated or out of order.
 */
import { byteArrayValues } from "../src/protocol/messages.ts";
import type { SovaDouble } from "../tests/support/sova-double.ts";

export interface PacedPlayer {
  readonly name: string;
  readonly sova: SovaDouble;
  /** Edits made so far. */
  readonly sent: number;
  /** Resolves once `count` edits have been made. */
  made(count: number): Promise<void>;
  /** Stops editing; resolves once the last edit has left the double. */
  stop(): Promise<void>;
}

/** An edit's bytes: the sequence number, big-endian, four bytes. */
export const numbered = (seq: number) =>
  Uint8Array.of((seq >>> 24) & 0xff, (seq >> 16) & 0xff, (seq >> 8) & 0xff, seq & 0xff);

export function pacePlayer(name: string, sova: SovaDouble, intervalMs: number): PacedPlayer {
  let sent = 0;
  let running = true;
  const waiting: Array<{ count: number; resolve: () => void }> = [];
  // Each edit waits for the double's lock, as Sova's does: a gap the tunnel does not nudge through stalls it.
  const loop = (async () => {
    while (running) {
      await sova.edit(numbered(sent), BigInt(Date.now()));
      sent++;
      for (let i = waiting.length - 1; i >= 0; i--) if (waiting[i]!.count <= sent) waiting.splice(i, 1)[0]!.resolve();
      await Bun.sleep(intervalMs);
    }
  })();
  return {
    name,
    sova,
    get sent() {
      return sent;
    },
    made(count) {
      if (sent >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiting.push({ count, resolve });
      return promise;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** The sequence numbers `to` handled from `from`, in the order handled. */
export function receivedFrom(to: SovaDouble, from: string): number[] {
  const out: number[] = [];
  for (const m of to.handled) {
    if (m.type !== "StateBroadcast" || m.source_instance_name !== from) continue;
    out.push(seqOf(byteArrayValues(m.update_data)));
  }
  return out;
}

export interface Delivery {
  sent: number;
  received: number;
  lost: number;
  repeated: number;
  /** Received after a higher number than theirs. */
  outOfOrder: number;
  /** The first few numbers never received. */
  missing: number[];
}

export function delivery(sent: number, received: readonly number[]): Delivery {
  const seen = new Set<number>();
  let repeated = 0;
  let outOfOrder = 0;
  let highest = -1;
  for (const n of received) {
    if (seen.has(n)) repeated++;
    seen.add(n);
    if (n < highest) outOfOrder++;
    highest = Math.max(highest, n);
  }
  const missing: number[] = [];
  for (let i = 0; i < sent; i++) if (!seen.has(i)) missing.push(i);
  return { sent, received: received.length, lost: missing.length, repeated, outOfOrder, missing: missing.slice(0, 10) };
}

export const seqOf = (data: Uint8Array) => ((data[0]! << 24) >>> 0) + (data[1]! << 16) + (data[2]! << 8) + data[3]!;

/**
 * Resolves once `to` has handled the last edit `from` made (they arrive in order, so the others came before it, or
 * are lost), or after `timeoutMs`; true when it came.
 */
export async function lastArrived(to: SovaDouble, from: PacedPlayer, timeoutMs: number): Promise<boolean> {
  const last = from.sent - 1;
  if (last < 0) return true;
  const arrived = to.handledWhere(
    (m) =>
      m.type === "StateBroadcast" &&
      m.source_instance_name === from.name &&
      seqOf(byteArrayValues(m.update_data)) === last,
  );
  let timer: Timer | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const ok = await Promise.race([arrived.then(() => true), timeout]);
  clearTimeout(timer);
  return ok;
}
