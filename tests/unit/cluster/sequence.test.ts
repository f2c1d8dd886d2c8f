/** Frame numbers between nodes (src/cluster/sequence.ts): gaps counted per node, and every lost frame in a line. */
import { describe, expect, test } from "bun:test";
import { createSequences } from "../../../src/cluster/sequence.ts";
import { createLogger } from "../../../src/lib/log.ts";

function gapsLogged() {
  const lines: Array<{ event: string; node: string; missing: number }> = [];
  const log = createLogger({ level: "debug", format: "json", write: (line) => lines.push(JSON.parse(line)) });
  const sequences = createSequences({ node: "a", epoch: 1, sentBy: () => null }, log);
  return { sequences, gaps: () => lines.filter((l) => l.event === "cluster_gap") };
}

describe("gaps", () => {
  test("the first gap is logged at once; the window's others when the node closes (stop), none lost", () => {
    const { sequences, gaps } = gapsLogged();
    sequences.check("b", 7, "s", 1, true);
    sequences.check("b", 7, "s", 3, true);
    sequences.check("b", 7, "s", 6, true);
    sequences.check("c", 7, "s", 1, true);
    sequences.check("c", 7, "s", 5, true);
    expect(gaps().map((g) => [g.node, g.missing])).toEqual([["b", 1]]);
    sequences.stop();
    // One line for every node: it names the last node with a gap, and the totals add up.
    expect(gaps().map((g) => [g.node, g.missing])).toEqual([
      ["b", 1],
      ["c", 5],
    ]);
    expect(sequences.gaps).toEqual({ b: 3, c: 3 });
    sequences.check("b", 7, "s", 9, true);
    expect(gaps()).toHaveLength(2);
  });
});
