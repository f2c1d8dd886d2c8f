import { describe, expect, test } from "bun:test";
import { pickHandshakeVictim, SPARE_MS } from "../../../src/core/eviction.ts";

const at = (group: string, openedAt: number) => ({ group, openedAt });

describe("which handshake gives up its slot for a newcomer", () => {
  const now = 100_000;
  const none = () => 0;

  test("one of an address holding more than the newcomer's would: the heaviest's oldest", () => {
    const victim = pickHandshakeVictim(
      [at("player", now - 5000), at("flood", now - 3000), at("flood", now - 4000), at("other", now - 6000)],
      "new",
      now,
      none,
    );
    expect(victim).toEqual(at("flood", now - 4000));
  });

  test("between equals, the address that opened more lately", () => {
    const opens = (g: string) => (g === "flood" ? 40 : 1);
    expect(pickHandshakeVictim([at("other", now - 5000), at("flood", now - 200)], "player", now, opens)).toEqual(
      at("flood", now - 200),
    );
  });

  test("no heavier address: the oldest handshake past SPARE_MS, else the newcomer is refused", () => {
    expect(pickHandshakeVictim([at("a", now - 5000), at("b", now - 2000)], "c", now, none)).toEqual(
      at("a", now - 5000),
    );
    expect(pickHandshakeVictim([at("a", now - 10), at("b", now - 20)], "c", now, none)).toBeNull();
    // A flood's own reconnection is refused rather than evicting its equal.
    expect(pickHandshakeVictim([at("a", now - 10), at("b", now - 20)], "a", now, none)).toBeNull();
  });

  test("handshakes younger than SPARE_MS are taken only when no heavier address holds an older one", () => {
    const young = now - SPARE_MS / 2;
    const cands = [
      at("flood", young),
      at("flood", young + 1),
      at("slow", now - SPARE_MS - 1),
      at("slow", now - SPARE_MS - 2),
    ];
    expect(pickHandshakeVictim(cands, "new", now, none)).toEqual(at("slow", now - SPARE_MS - 2));
    expect(pickHandshakeVictim(cands.slice(0, 2), "new", now, none)).toEqual(at("flood", young));
    expect(pickHandshakeVictim([], "new", now, none)).toBeNull();
  });
});
