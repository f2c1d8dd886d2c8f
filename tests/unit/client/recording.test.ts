/**
 * The recording format history export writes and replay reads (src/client/recording.ts):
 * what goes in comes out byte for byte, and a line that is not what export writes stops
 * the reading with its line number.
 */
import { describe, expect, test } from "bun:test";
import { frameLines, frameParts, headerLine, MAX_GAP_MS, parseRecording } from "../../../src/client/recording.ts";
import { broadcastPrefix, encodeBroadcastFrame, encodeFrame } from "../../../src/protocol/messages.ts";
import { toByteArrayWire } from "../../../src/protocol/msgpack.ts";

const frame = (by: string, data: number[]) =>
  encodeBroadcastFrame(broadcastPrefix(by), 1n, toByteArrayWire(Uint8Array.from(data)));
const HEADER = headerLine({ session: "open", frames: 2, exported_at: "2026-12-03T07:00:00Z", source: "state-dir" });
const refusal = (text: string) => {
  try {
    parseRecording(text, "concert.jsonl");
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("read without a refusal");
};

describe("a recording", () => {
  test("holds every frame byte for byte with its sender, update and arrival time", () => {
    const frames = [frame("alice", [1, 2, 3]), frame("bob", [])];
    const text =
      HEADER +
      frameLines([
        { at: 1000, frame: frames[0]! },
        { at: 1500, frame: frames[1]! },
      ]);
    const r = parseRecording(text, "concert.jsonl");
    expect(r.header).toMatchObject({ sova_relay_recording: 1, session: "open", frames: 2 });
    expect(r.frames.map((f) => ({ at: f.at, source: f.source, data: [...f.data] }))).toEqual([
      { at: 1000, source: "alice", data: [1, 2, 3] },
      { at: 1500, source: "bob", data: [] },
    ]);
    expect(r.frames.map((f) => f.frame)).toEqual(frames);
  });

  test("written with a relay clock stepped back, its times never go back (read as no wait)", () => {
    const text =
      HEADER +
      frameLines([
        { at: 2000, frame: frame("alice", [1]) },
        { at: 1200, frame: frame("alice", [2]) },
      ]);
    expect(parseRecording(text, "concert.jsonl").frames.map((f) => f.at)).toEqual([2000, 2000]);
  });

  test("frameParts refuses what is not a whole StateBroadcast frame", () => {
    expect(() => frameParts(frame("alice", [1]).subarray(0, 10))).toThrow("length prefix");
    expect(() => frameParts(encodeFrame({ type: "Pong", timestamp: 1n }))).toThrow("not a StateBroadcast");
  });
});

describe("a line that is not what export writes stops the reading, naming it", () => {
  const line = (o: unknown) => `${JSON.stringify(o)}\n`;
  const good = Buffer.from(frame("alice", [1])).toString("base64");
  const cases: Array<[string, string, RegExp]> = [
    ["no JSON header", "hello\n", /line 1: not a JSON header/],
    ["another version", line({ sova_relay_recording: 2, session: "open" }), /line 1: not a version 1 recording/],
    ["a line that is not JSON", `${HEADER}{\n`, /line 2: not JSON/],
    ["no frame", HEADER + line({ at: 1 }), /line 2: expected an arrival time and a frame/],
    ["a negative time", HEADER + line({ at: -1, frame: good }), /line 2: 'at' is -1, not an arrival time/],
    ["a time as text", HEADER + line({ at: "1", frame: good }), /line 2: 'at' is "1", not an arrival time/],
    ["a time past any date", `${HEADER}{"at":1e400,"frame":"${good}"}\n`, /line 2: 'at' is Infinity, not an arrival/],
    [
      "a time going back",
      HEADER + line({ at: 5, frame: good }) + line({ at: 4, frame: good }),
      /line 3: 'at' 4 is 1 ms before/,
    ],
    [
      "a gap past a week",
      HEADER + line({ at: 0, frame: good }) + line({ at: MAX_GAP_MS + 1, frame: good }),
      /line 3: .* days after the line above's/,
    ],
    ["a frame that is no broadcast", HEADER + line({ at: 1, frame: "AAAA" }), /line 2: /],
  ];
  for (const [name, text, pattern] of cases)
    test(name, () => {
      const message = refusal(text);
      expect(message).toMatch(pattern);
      expect(message).toStartWith("concert.jsonl, line ");
    });
});
