/**
 * The outbound queue against a byte sink that takes what we tell it to: partial
 * writes, -1, drain, coalescing, the per-peer bound and the shared budget.
 */
import { describe, expect, test } from "bun:test";
import { atTurnEnd, createBudget, createOutbox, type ByteSink } from "../../../src/lib/outbox.ts";

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

  test("a burst from many senders leaves as one write per turn, in queue order, and counts back to zero", async () => {
    // One peer of a session whose 50 members all edited at once: 49 shared broadcasts in a turn.
    const budget = createBudget(1 << 30);
    const s = sink();
    const o = createOutbox(s, { maxPendingBytes: 1 << 20, budget });
    for (let turn = 0; turn < 3; turn++) {
      const sent: number[] = [];
      for (let sender = 0; sender < 49; sender++) {
        // Lengths differ by sender and turn, so a count kept for the wrong frame shows.
        const f = new Uint8Array(1 + (sender % (turn + 3))).fill(sender);
        sent.push(...f);
        o.enqueue(f);
      }
      // Shared frames are counted by length, once per recipient, while they wait.
      expect(o.liveBytes).toBe(sent.length);
      expect(budget.used).toBe(sent.length);
      await nextTurn();
      expect(s.writes.length).toBe(turn + 1);
      expect([...s.writes[turn]!]).toEqual(sent);
      expect(o.pendingBytes).toBe(0);
      expect(o.heldBytes).toBe(0);
      expect(budget.used).toBe(0);
    }
  });

  test("a backlog longer than the queue keeps in place drains in order, and the outbox counts from zero after", async () => {
    let room = 0;
    const budget = createBudget(1 << 30);
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20, budget });
    const expected: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const f = frame(i & 0xff, i >> 8);
      expected.push(...f);
      o.enqueue(f);
    }
    await nextTurn();
    expect(budget.used).toBe(6000);
    room = Infinity;
    o.flush();
    expect(s.bytes()).toEqual(expected);
    expect(budget.used).toBe(0);
    o.enqueue(frame(7, 7));
    o.enqueue(frame(8, 8));
    expect(o.liveBytes).toBe(4);
    await nextTurn();
    expect([...s.writes.at(-1)!]).toEqual([7, 7, 8, 8]);
    expect(budget.used).toBe(0);
  });

  test("what a partial merged write leaves is counted at its copy, which the budget holds until it is taken", async () => {
    let room = 3;
    const budget = createBudget(1 << 30);
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20, budget });
    o.enqueue(new Uint8Array(4).fill(1));
    o.enqueue(new Uint8Array(6).fill(2));
    o.enqueue(new Uint8Array(2).fill(3));
    expect(budget.used).toBe(12);
    await nextTurn();
    // The merged write took 3 of 12 bytes; the 9 left were copied out of the shared merge area.
    expect(s.bytes()).toEqual([1, 1, 1]);
    expect(o.pendingBytes).toBe(9);
    expect(o.liveBytes).toBe(9);
    expect(budget.used).toBe(9);
    room = Infinity;
    o.flush();
    expect(s.bytes()).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]);
    expect(o.liveBytes).toBe(0);
    expect(budget.used).toBe(0);
  });

  test("the last word after a partial merged write: the frames that started to go out are finished, then it", async () => {
    let room = 3;
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    o.enqueue(frame(1, 2, 3, 4));
    o.enqueue(frame(5, 6)); // merged with the first: it started to go out in the same write
    await nextTurn();
    o.enqueue(frame(7, 7)); // never started: dropped
    o.endWith(frame(0xee));
    room = 100;
    o.flush();
    expect(s.bytes()).toEqual([1, 2, 3, 4, 5, 6, 0xee]);
    expect(s.ended()).toBe(true);
    expect(o.heldBytes).toBe(0);
  });

  test("a socket that is gone (-1) drops the queue instead of growing it", async () => {
    const s = sink(() => -1);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    o.enqueue(frame(1));
    await nextTurn();
    expect(o.pendingBytes).toBe(0);
  });

  test("the per-peer bound refuses once held bytes would pass it", async () => {
    const s = sink(() => 0);
    const o = createOutbox(s, { maxPendingBytes: 10_000 });
    expect(o.enqueue(new Uint8Array(6000))).toBe(true);
    await nextTurn();
    expect(o.enqueue(new Uint8Array(4000))).toBe(true);
    expect(o.enqueue(new Uint8Array(5000))).toBe(false);
  });

  test("small frames cost what they count: merged into chunks the outbox owns, capacity counted", () => {
    const o = createOutbox(
      sink(() => 0),
      { maxPendingBytes: 1 << 30 },
    );
    const reply = new Uint8Array(49).fill(7);
    for (let i = 0; i < 10_000; i++) o.enqueue(reply, false, true);
    expect(o.pendingBytes).toBe(490_000);
    // Chunks grow by doubling up to 64 KiB, so what is held stays within a few percent of what is queued.
    expect(o.heldBytes).toBeGreaterThanOrEqual(490_000);
    expect(o.heldBytes).toBeLessThan(490_000 * 1.15);
    expect(o.liveBytes).toBe(o.heldBytes);
  });

  test("one frame larger than the bound still goes to a peer that has nothing queued", () => {
    const o = createOutbox(
      sink(() => 0),
      { maxPendingBytes: 10 },
    );
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

  test(`the shared budget: pressure on past the limit, off under half; \
backlogged peers refused meanwhile`, async () => {
    const K = 5000; // over the small-frame size: counted by length, as shared broadcasts are
    const events: boolean[] = [];
    const budget = createBudget(100 * K, (over) => events.push(over));
    let room = 0;
    const slow = createOutbox(
      sink(() => room),
      { maxPendingBytes: 80 * K, budget },
    );
    const quick = createOutbox(sink(), { maxPendingBytes: 80 * K, budget });
    expect(slow.enqueue(new Uint8Array(60 * K))).toBe(true);
    await nextTurn();
    expect(slow.enqueue(new Uint8Array(20 * K))).toBe(true);
    expect(budget.over).toBe(false);
    const other = createOutbox(
      sink(() => 0),
      { maxPendingBytes: 80 * K, budget },
    );
    other.enqueue(new Uint8Array(30 * K));
    expect(events).toEqual([true]);
    // `slow` holds 80 K > half its bound: refused. `quick` holds nothing: accepted.
    expect(slow.enqueue(new Uint8Array(K))).toBe(false);
    expect(quick.enqueue(new Uint8Array(10 * K))).toBe(true);
    await nextTurn();
    room = Infinity;
    slow.flush();
    expect(budget.used).toBe(30 * K);
    expect(events).toEqual([true, false]);
  });

  test("front frames (registration response, history) go first and count against neither bound", async () => {
    const K = 5000;
    const budget = createBudget(10 * K);
    let room = 0;
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 2 * K, budget });
    expect(o.enqueue(frame(9, 9), false)).toBe(true);
    for (let i = 0; i < 50; i++) expect(o.enqueue(new Uint8Array(K).fill(i), true)).toBe(true);
    expect(budget.used).toBe(2); // the live frame only, by reference: it was not made for this peer alone
    expect(o.frontBytes).toBe(50 * K);
    room = Infinity;
    await nextTurn();
    const bytes = s.bytes();
    expect(bytes.length).toBe(50 * K + 2);
    expect(bytes.slice(-2)).toEqual([9, 9]);
    expect(bytes[49 * K]).toBe(49);
    expect(o.frontBytes).toBe(0);
    expect(budget.used).toBe(0);
  });

  test("endWith: a partly written frame is finished, the rest dropped, the last word sent, then the end", async () => {
    let room = 3;
    const s = sink(() => room);
    const o = createOutbox(s, { maxPendingBytes: 1 << 20 });
    o.enqueue(frame(1, 2, 3, 4, 5));
    await nextTurn();
    expect(s.bytes()).toEqual([1, 2, 3]);
    o.enqueue(frame(6, 6)); // queued behind, never started: dropped
    o.endWith(frame(0xee));
    expect(s.ended()).toBe(false);
    room = 100;
    o.flush();
    expect(s.bytes()).toEqual([1, 2, 3, 4, 5, 0xee]);
    expect(s.ended()).toBe(true);
    expect(o.heldBytes).toBe(0);
  });
});

describe("the end of a turn (atTurnEnd)", () => {
  const sinkOf = (written: number[]): ByteSink => ({
    write: (b) => {
      written.push(b.length);
      return b.length;
    },
    end() {},
  });

  test("runs before the turn's writes, and what it queues leaves in them; deferred from there, it still runs", async () => {
    const written: number[] = [];
    const o = createOutbox(sinkOf(written), { maxPendingBytes: 1 << 20 });
    const { promise, resolve } = Promise.withResolvers<void>();
    o.enqueue(new Uint8Array(3));
    atTurnEnd(() => {
      o.enqueue(new Uint8Array(4));
      // Deferred by a deferred function: this same flush runs it, no other enqueue needed to wake it.
      atTurnEnd(() => {
        o.enqueue(new Uint8Array(5));
        resolve();
      });
    });
    await promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(written).toEqual([12]);
  });

  test("what it queues is written before what was queued earlier in the turn (a sweep's Pongs wait, a beat does not)", async () => {
    const order: string[] = [];
    const named = (name: string): ByteSink => ({
      write: (b) => {
        order.push(name);
        return b.length;
      },
      end() {},
    });
    const pongs = ["pong-1", "pong-2"].map((n) => createOutbox(named(n), { maxPendingBytes: 1 << 20 }));
    const beat = createOutbox(named("beat"), { maxPendingBytes: 1 << 20 });
    for (const o of pongs) o.enqueue(new Uint8Array(30));
    const { promise, resolve } = Promise.withResolvers<void>();
    atTurnEnd(() => {
      beat.enqueue(new Uint8Array(470));
      // An outbox dirtied earlier and given more at the end keeps its own order and its place.
      pongs[1]!.enqueue(new Uint8Array(470));
      resolve();
    });
    await promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(order).toEqual(["beat", "pong-1", "pong-2"]);
  });
});
