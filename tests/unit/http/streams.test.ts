/**
 * The HTTP side's event streams (spectators' /watch/KEY/events and the status
 * page's /events) when a stream is found closed as a frame is queued: the stream
 * is dropped and the frame counted, never lost unseen. What closes a stream
 * without its cancel being called is the runtime's; here `enqueue` is made to
 * throw, as it does on a closed stream, for the test's streams only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createEventStreams } from "../../../src/http/events.ts";
import { createSpectatorStreams, emptySpectatorStats } from "../../../src/http/spectators.ts";
import { silentLogger } from "../../../src/lib/log.ts";
import { createWatcher } from "../../../src/watch/index.ts";
import { sampleContext } from "../../../scripts/reference/sample.ts";
import { until } from "../../support/until.ts";

const proto = ReadableStreamDefaultController.prototype;
const enqueue = proto.enqueue;
afterEach(() => {
  proto.enqueue = enqueue;
});

/** From now on, queueing into a stream throws as it does on a closed one. */
function closeUnnoticed(): void {
  proto.enqueue = () => {
    throw new TypeError("Invalid state: Controller is already closed");
  };
}

describe("a stream found closed when a frame is queued", () => {
  test("a spectator's: dropped, and counted as gone", async () => {
    const watcher = createWatcher({});
    watcher.watch(["open"]);
    const stats = emptySpectatorStats();
    const streams = createSpectatorStreams(
      {
        watcher,
        maxSpectators: 8,
        maxSpectatorsPerAddress: 8,
        maxSpectatorsPerSession: 8,
        tickMs: 5,
        backlogBytes: 1 << 20,
        streamBytes: 1 << 20,
        heartbeatMs: 0, // a frame every tick
      },
      () => [],
      stats,
      () => {},
    );
    try {
      expect(streams.subscribe(watcher.session("open")!, "127.0.0.1", undefined).status).toBe(200);
      expect(stats.spectators).toBe(1);
      closeUnnoticed();
      await until(() => stats.gone === 1, "the closed stream counted");
      proto.enqueue = enqueue;
      expect(stats).toMatchObject({ spectators: 0, gone: 1, cut: 0, rotated: 0 });
    } finally {
      streams.stop();
    }
  });

  test("a status page's: dropped, and counted as gone", async () => {
    const limits = {
      eventIntervalMs: 5,
      maxEventSubscribers: 8,
      maxEventSubscribersPerAddress: 8,
      maxEventBacklogBytes: 1 << 20,
      maxEventStreamBytes: 1 << 20,
    };
    const streams = createEventStreams(limits, sampleContext(), silentLogger);
    try {
      expect(streams.subscribe("127.0.0.1").status).toBe(200);
      expect(streams.stats.subscribers).toBe(1);
      closeUnnoticed();
      await until(() => streams.stats.gone === 1, "the closed stream counted");
      proto.enqueue = enqueue;
      expect(streams.stats).toMatchObject({ subscribers: 0, gone: 1, cut: 0, rotated: 0 });
    } finally {
      streams.stop();
    }
  });
});
