/** --help's layout: words wrapped to a width, names beside or above their descriptions. */
import { describe, expect, test } from "bun:test";
import { stripVTControlCharacters } from "node:util";
import { helpWidth, layoutRows, PIPE_COLUMNS, wrap } from "../../../src/cli/help.ts";

describe("wrap", () => {
  test("cuts at spaces within the width; a word longer than the width stays whole", () => {
    expect(wrap("one two three four", 9)).toEqual(["one two", "three", "four"]);
    expect(wrap("a SOVA_RELAY_MAX_INSTANCES_PER_SESSION b", 10)).toEqual([
      "a",
      "SOVA_RELAY_MAX_INSTANCES_PER_SESSION",
      "b",
    ]);
    expect(wrap("", 10)).toEqual([""]);
  });
});

describe("layoutRows", () => {
  const plain = (rows: Array<[string, string]>, width: number) => stripVTControlCharacters(layoutRows(rows, width));

  test("short names: descriptions beside them, continued under the description's column", () => {
    const rows: Array<[string, string]> = [
      ["health", "Exit 0 when a relay answers at host:port, 1 when not"],
      ["tunnel", "Carry"],
    ];
    expect(plain(rows, 42)).toBe(
      ["  health    Exit 0 when a relay answers at", "            host:port, 1 when not", "  tunnel    Carry"].join(
        "\n",
      ),
    );
  });

  test("long names: each on its line, its description under it, indented", () => {
    const name = "--max-spectators-per-session=<max_spectators_per_session>";
    expect(plain([[name, "Spectator pages of one session"]], 40)).toBe(
      `  ${name}\n      Spectator pages of one session`,
    );
  });

  test("the width: a terminal's columns, else 100", () => {
    expect(helpWidth({ isTTY: true, columns: 80 })).toBe(80);
    expect(helpWidth({ isTTY: false, columns: 80 })).toBe(PIPE_COLUMNS);
    expect(helpWidth({})).toBe(PIPE_COLUMNS);
  });
});
