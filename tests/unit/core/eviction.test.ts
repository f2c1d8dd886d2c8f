import { describe, expect, test } from "bun:test";
import { byGroup, type Candidate, pickHandshakeVictim, SPARE_MS } from "../../../src/core/eviction.ts";

const at = (group: string, openedAt: number) => ({ group, openedAt });

/** The victim for a newcomer from `group` arriving `now`, among `cands`. */
function pick(cands: Candidate[], group: string, now: number, opens: (g: string) => number): Candidate | null {
  const newcomer = { group, openedAt: now };
  return pickHandshakeVictim(byGroup(cands, newcomer), newcomer, now, () => true, opens);
}

describe("which handshake gives up its slot for a newcomer", () => {
  const now = 100_000;
  const none = () => 0;

  test("the oldest of the address holding the most", () => {
    const victim = pick(
      [at("player", now - 5000), at("flood", now - 3000), at("flood", now - 4000), at("other", now - 6000)],
      "new",
      now,
      none,
    );
    expect(victim).toEqual(at("flood", now - 4000));
  });

  test("the newcomer counts in its own address: an ensemble joining does not evict itself first", () => {
    const cands = [at("venue", now - 2000), at("venue", now - 1500), at("flood", now - 3000), at("flood", now - 2500)];
    expect(pick(cands, "venue", now, none)).toEqual(at("venue", now - 2000));
    expect(pick(cands, "player", now, none)).toEqual(at("flood", now - 3000));
  });

  test("between equals, the address that opened the most lately; then the one that waited longest", () => {
    const opens = (g: string) => (g === "flood" ? 40 : 1);
    expect(pick([at("other", now - 5000), at("flood", now - 2000)], "player", now, opens)).toEqual(
      at("flood", now - 2000),
    );
    expect(pick([at("a", now - 5000), at("b", now - 2000)], "c", now, none)).toEqual(at("a", now - 5000));
  });

  test("handshakes younger than SPARE_MS are taken only when no address holds an older one; never none", () => {
    const young = now - SPARE_MS / 2;
    const cands = [at("flood", young), at("flood", young + 1), at("slow", now - SPARE_MS - 1)];
    expect(pick(cands, "new", now, none)).toEqual(at("slow", now - SPARE_MS - 1));
    expect(pick(cands.slice(0, 2), "new", now, none)).toEqual(at("flood", young));
    expect(pick([], "new", now, none)).toBeNull();
  });
});
