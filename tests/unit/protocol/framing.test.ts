import { describe, expect, test } from "bun:test";
import { createFrameReader, frameOf } from "../../../src/protocol/framing.ts";

function collect(max: number) {
  const frames: Uint8Array[] = [];
  const oversized: number[] = [];
  const reader = createFrameReader(max, {
    frame: (b) => frames.push(b.slice()),
    oversized: (n) => oversized.push(n),
  });
  return { reader, frames, oversized };
}

const body = (n: number, seed = 0) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

describe("frame reader", () => {
  test("a stream cut at every byte boundary yields the same frames", () => {
    const bodies = [body(1), body(0), body(300, 1), body(5, 2), body(70, 3)];
    const stream = Buffer.concat(bodies.map(frameOf));
    for (let cut = 0; cut <= stream.length; cut++) {
      const { reader, frames } = collect(1024);
      reader.push(stream.subarray(0, cut));
      reader.push(stream.subarray(cut));
      expect(frames.map((f) => Buffer.from(f).toString("hex"))).toEqual(
        bodies.map((b) => Buffer.from(b).toString("hex")),
      );
    }
  });

  test("one byte at a time", () => {
    const bodies = [body(10), body(1000, 7), body(3)];
    const stream = Buffer.concat(bodies.map(frameOf));
    const { reader, frames } = collect(4096);
    for (const b of stream) reader.push(Uint8Array.of(b));
    expect(frames.length).toBe(3);
    expect(frames[1]).toEqual(bodies[1]!);
  });

  test("many frames in one chunk are all delivered, in order", () => {
    const bodies = Array.from({ length: 1000 }, (_, i) => body(i % 50, i));
    const { reader, frames } = collect(1024);
    reader.push(Buffer.concat(bodies.map(frameOf)));
    expect(frames).toEqual(bodies);
  });

  test("a 1 MiB frame in 64 KiB pieces is copied once, not re-concatenated per piece", () => {
    const big = body(1024 * 1024, 9);
    const stream = frameOf(big);
    const { reader, frames } = collect(1024 * 1024);
    for (let at = 0; at < stream.length; at += 64 * 1024) reader.push(stream.subarray(at, at + 64 * 1024));
    expect(frames.length).toBe(1);
    expect(frames[0]!.length).toBe(big.length);
    expect(Buffer.compare(frames[0]!, big)).toBe(0);
    // Quadratic concatenation would copy ~8.5 MiB here.
    expect(reader.stats.bytesCopied).toBeLessThanOrEqual(big.length);
  });

  test("a frame whole inside one chunk is handed over without a copy", () => {
    const chunk = frameOf(body(100));
    let seen: Uint8Array | null = null;
    const reader = createFrameReader(1024, { frame: (b) => (seen = b), oversized: () => {} });
    reader.push(chunk);
    expect(seen!.buffer).toBe(chunk.buffer);
    expect(reader.stats.bytesCopied).toBe(0);
  });

  test("an oversized frame is skipped as it streams in, never buffered, and the next frame reads", () => {
    const max = 1024;
    const huge = frameOf(body(10_000));
    const after = frameOf(body(10, 4));
    const { reader, frames, oversized } = collect(max);
    const stream = Buffer.concat([huge, after]);
    let maxBuffered = 0;
    for (let at = 0; at < stream.length; at += 333) {
      reader.push(stream.subarray(at, at + 333));
      maxBuffered = Math.max(maxBuffered, reader.buffered);
    }
    expect(oversized).toEqual([10_000]);
    expect(frames).toEqual([body(10, 4)]);
    expect(maxBuffered).toBeLessThanOrEqual(max);
  });

  test("a length at exactly the maximum is accepted; one byte more is not", () => {
    const { reader, frames, oversized } = collect(100);
    reader.push(Buffer.concat([frameOf(body(100)), frameOf(body(101)), frameOf(body(1))]));
    expect(frames.map((f) => f.length)).toEqual([100, 1]);
    expect(oversized).toEqual([101]);
  });

  test("a 4 GiB length header allocates nothing", () => {
    const { reader, oversized } = collect(1024);
    reader.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 1, 2, 3));
    expect(oversized).toEqual([0xffffffff]);
    expect(reader.buffered).toBe(0);
    expect(reader.midFrame).toBe(true);
  });

  test("stop() ends delivery, even of frames already in the chunk", () => {
    const frames: Uint8Array[] = [];
    const reader = createFrameReader(1024, {
      frame: (b) => {
        frames.push(b);
        reader.stop();
      },
      oversized: () => {},
    });
    reader.push(Buffer.concat([frameOf(body(1)), frameOf(body(2))]));
    expect(frames.length).toBe(1);
  });
});
