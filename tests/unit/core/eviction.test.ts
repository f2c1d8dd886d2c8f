import { describe, expect, test } from "bun:test";
import { pickHandshakeVictim, SPARE_MS } from "../../../src/core/eviction.ts";

const at = (group: string, openedAt: number) => ({ group, openedAt });

describe("which handshake gives up its slot", () => {
  const now = 100_000;
  const none = () => 0;

  test("from the address holding the most, its oldest", () => {
    const victim = pickHandshakeVictim(
      [at("player", now - 5000), at("flood", now - 3000), at("flood", now - 4000), at("other", now - 6000)],
      now,
      none,
    );
    expect(victim).toEqual(at("flood", now - 4000));
  });

  test("between equals, the address that opened the most lately; then the oldest", () => {
    const opens = (g: string) => (g === "flood" ? 40 : 1);
    expect(pickHandshakeVictim([at("player", now - 5000), at("flood", now - 2000)], now, opens)).toEqual(
      at("flood", now - 2000),
    );
    expect(pickHandshakeVictim([at("a", now - 5000), at("b", now - 2000)], now, none)).toEqual(at("a", now - 5000));
  });

  test("handshakes younger than SPARE_MS are taken only when no address holds an older one", () => {
    const young = now - SPARE_MS / 2;
    const cands = [at("flood", young), at("flood", young + 1), at("slow", now - SPARE_MS - 1)];
    expect(pickHandshakeVictim(cands, now, none)).toEqual(at("slow", now - SPARE_MS - 1));
    expect(pickHandshakeVictim(cands.slice(0, 2), now, none)).toEqual(at("flood", young));
    expect(pickHandshakeVictim([], now, none)).toBeNull();
  });
});
