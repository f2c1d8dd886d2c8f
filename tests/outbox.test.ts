/**
 * The outbound queue against a byte sink that takes what we tell it to: partial
 * writes, -1, drain, coalescing, the per-peer bound and the shared budget.
 */
import { describe, expect, test } from "bun:test";
import { createBudget, createOutbox, type ByteSink } from "../src/net/outbox.ts";

function sink(accept: () => number = () => Infinity) {
  const writes: Uint8Array[] = [];
  let ended = false;
  const s: ByteSink & { writes: Uint8Array[]; bytes(): number[]; ended(): boolean } = {
    writes,
    write(data) {
      const n = Math.min(accept(), data.length);
      if (n < 0) return -1;
      writes.push(data.slice(0, n));
      return n;
    },
    end() {
      ended = true;
    },
    bytes: () => writes.flatMap((w) => [...w]),
    ended: () => ended,
  };
  return s;
}

const frame = (...b: number[]) => Uint8Array.from(b);
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe("outbox", () => {
  test("frames queued in one turn leave in one write, in order", async () => {
    const s = sink();
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    for (let i = 0; i < 10; i++) o.enqueue(frame(i, i));
    expect(s.writes.length).toBe(0);
    await nextTurn();
    expect(s.writes.length).toBe(1);
    expect(s.bytes()).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]);
    expect(o.pendingBytes).toBe(0);
  });

  test("what a partial merged write leaves survives other outboxes merging their own frames", async () => {
    let room = 3;
    const blocked = sink(() => room);
    const other = sink();
    const a = createOutbox(blocked, { maxPendingBytes: 1 << 20 });
    const b = createOutbox(other, { maxPendingBytes: 1 << 20 });
    a.enqueue(frame(1, 2, 3, 4));
    a.enqueue(frame(5, 6));
    await nextTurn();
    expect(blocked.bytes()).toEqual([1, 2, 3]);
    // b's merged write goes through the same merge area a's remainder came from.
    b.enqueue(frame(9, 9, 9, 9));
    b.enqueue(frame(8, 8));
    await nextTurn();
    expect(other.bytes()).toEqual([9, 9, 9, 9, 8, 8]);
    room = 100;
    a.flush();
    expect(blocked.bytes()).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test("a partial write keeps the rest and sends it on drain, nothing lost or reordered", async () => {
    let room = 3;
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    o.enqueue(frame(1, 2, 3, 4));
    o.enqueue(frame(5, 6));
    await nextTurn();
    expect(s.bytes()).toEqual([1, 2, 3]);
    expect(o.pendingBytes).toBe(3);
    o.enqueue(frame(7)); // queued behind, not written while blocked
    await nextTurn();
    expect(s.bytes()).toEqual([1, 2, 3]);
    room = 100;
    o.flush(); // what `drain` calls
    expect(s.bytes()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(o.pendingBytes).toBe(0);
  });

  test("a socket that is gone (-1) drops the queue instead of growing it", async () => {
    const s = sink(() => -1);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    o.enqueue(frame(1));
    await nextTurn();
    expect(o.pendingBytes).toBe(0);
  });

  test("the per-peer bound refuses once unsent bytes would pass it", async () => {
    const s = sink(() => 0);
    const o = createOutbox(s, { maxPendingBytes: 10 });
    expect(o.enqueue(new Uint8Array(6))).toBe(true);
    await nextTurn();
    expect(o.enqueue(new Uint8Array(4))).toBe(true);
    expect(o.enqueue(new Uint8Array(1))).toBe(false);
  });

  test("one frame larger than the bound still goes to a peer that has nothing queued", () => {
    const o = createOutbox(sink(() => 0), { maxPendingBytes: 10 });
    expect(o.enqueue(new Uint8Array(100))).toBe(true);
  });

  test("endAfterFlush ends the socket only after everything queued is taken", async () => {
    let room = 2;
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 100 });
    o.enqueue(frame(1, 2, 3));
    o.endAfterFlush();
    expect(s.ended()).toBe(false);
    room = 10;
    o.flush();
    expect(s.ended()).toBe(true);
    expect(s.bytes()).toEqual([1, 2, 3]);
  });

  test("the shared budget: pressure on past the limit, off under half; backlogged peers refused meanwhile", async () => {
    const events: boolean[] = [];
    const budget = createBudget(100, (over) => events.push(over));
    let room = 0;
    const slow = createOutbox(sink(() => room), { maxPendingBytes: 80, budget });
    const quick = createOutbox(sink(), { maxPendingBytes: 80, budget });
    expect(slow.enqueue(new Uint8Array(60))).toBe(true);
    await nextTurn();
    expect(slow.enqueue(new Uint8Array(20))).toBe(true);
    expect(budget.over).toBe(false);
    const other = createOutbox(sink(() => 0), { maxPendingBytes: 80, budget });
    other.enqueue(new Uint8Array(30));
    expect(events).toEqual([true]);
    // `slow` holds 80 > half its bound: refused. `quick` holds nothing: accepted.
    expect(slow.enqueue(new Uint8Array(1))).toBe(false);
    expect(quick.enqueue(new Uint8Array(10))).toBe(true);
    await nextTurn();
    room = 1000;
    slow.flush();
    expect(budget.used).toBe(30);
    expect(events).toEqual([true, false]);
  });
});
