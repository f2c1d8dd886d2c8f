/**
 * The option engine (src/lib/options.ts) and the tables it reads: what a row
 * says it accepts is what its value is checked against, so the reference docs
 * and --help, made from the rows, cannot drift from what the relay does.
 */
import { describe, expect, test } from "bun:test";
import { parseArgs } from "citty";
import { CLEAR_OPTIONS } from "../../../src/cli/history.ts";
import { HEALTH_OPTIONS } from "../../../src/cli/health.ts";
import { TUNNEL_OPTIONS } from "../../../src/cli/tunnel.ts";
import { OPTIONS, RELAY_ARGS } from "../../../src/host/config.ts";
import {
  type AnyRow,
  argsDef,
  describeOption,
  envName,
  flagName,
  type OptionTable,
  parseValue,
  resolveOptions,
  rowsOf,
} from "../../../src/lib/options.ts";

interface Sample {
  count: number;
  waitMs: number;
  port: number | null;
  mode: string;
  label: string;
  secret: string;
  ranges: string[];
  on: boolean;
}

const SAMPLE: OptionTable<Sample> = [
  { key: "count", description: "How many", default: 3, type: "integer", min: 1, max: 10, legacyEnv: ["OLD_COUNT"] },
  { key: "waitMs", description: "How long", default: 2, type: "seconds", min: 0.5 },
  { key: "port", description: "Where", default: 80, type: "port", zero: "off" },
  { key: "mode", description: "Which", default: "a", type: "choice", choices: ["a", "b"] },
  { key: "label", description: "Named", default: "", type: "text", empty: "allowed" },
  { key: "secret", flag: "key", description: "Kept", default: "", type: "secret" },
  {
    key: "ranges",
    flag: "range",
    description: "Where from",
    default: [],
    type: "custom",
    accepts: "a letter",
    parse: (raw) => raw.trim(),
    repeatable: true,
  },
  { key: "on", description: "Switched", default: false, type: "switch" },
];

function resolve(argv: string[], env: Record<string, string> = {}): Sample {
  return resolveOptions(SAMPLE, parseArgs(argv, argsDef(SAMPLE)), argv, env);
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("not refused");
}

const ALL_TABLES = [
  ["relay", OPTIONS],
  ["health", HEALTH_OPTIONS],
  ["history clear", CLEAR_OPTIONS],
  ["tunnel", TUNNEL_OPTIONS],
] as const;
const allRows = (): Array<[string, AnyRow]> =>
  ALL_TABLES.flatMap(([name, table]) =>
    rowsOf(table as OptionTable<unknown>).map((r) => [name, r] as [string, AnyRow]),
  );

describe("names", () => {
  test("flags in kebab case, `Ms` dropped; the environment in SOVA_RELAY_ capitals", () => {
    expect(flagName("maxPendingBytes")).toBe("max-pending-bytes");
    expect(flagName("handshakeTimeoutMs")).toBe("handshake-timeout");
    expect(envName("handshakeTimeoutMs")).toBe("SOVA_RELAY_HANDSHAKE_TIMEOUT");
  });
});

describe("values", () => {
  test("defaults, flags over the environment over legacy names; seconds held in milliseconds", () => {
    expect(resolve([])).toEqual({
      count: 3,
      waitMs: 2000,
      port: 80,
      mode: "a",
      label: "",
      secret: "",
      ranges: [],
      on: false,
    });
    expect(resolve([], { OLD_COUNT: "4" }).count).toBe(4);
    expect(resolve([], { OLD_COUNT: "4", SOVA_RELAY_COUNT: "5" }).count).toBe(5);
    expect(resolve(["--count", "6"], { SOVA_RELAY_COUNT: "5" }).count).toBe(6);
    expect(resolve(["--wait", "0.75"]).waitMs).toBe(750);
    expect(resolve(["--port", "0"]).port).toBeNull();
    expect(resolve(["--port", "any"]).port).toBe(0);
    expect(resolve(["--mode", "B"]).mode).toBe("b");
    expect(resolve(["--on"]).on).toBe(true);
    expect(resolve([], { SOVA_RELAY_ON: "yes" }).on).toBe(true);
  });

  test("a repeatable flag keeps every use, each comma-separated too; its variable is comma-separated", () => {
    expect(resolve(["--range", "a", "--count", "2", "--range=b,c"]).ranges).toEqual(["a", "b", "c"]);
    expect(resolve([], { SOVA_RELAY_RANGES: "x, y,,z" }).ranges).toEqual(["x", "y", "z"]);
    // After `=` a value starting with "--" is the value (a base64url token may); spaced, it is the next flag.
    expect(resolve(["--range=--a", "--range=-b"]).ranges).toEqual(["--a", "-b"]);
    expect(refusal(() => resolve(["--range", "--a"]))).toBe("option --range needs a value");
  });

  test("a refusal names the option, where it came from and what was expected; a secret is never echoed", () => {
    expect(refusal(() => resolve(["--count", "11"]))).toBe(
      "invalid value for --count: '11' (expected a whole number from 1 to 10)",
    );
    expect(refusal(() => resolve([], { SOVA_RELAY_WAIT: "0.1" }))).toBe(
      "invalid value for --wait (from SOVA_RELAY_WAIT): '0.1' (expected a number of seconds, at least 0.5)",
    );
    expect(refusal(() => resolve(["--mode", "c"]))).toContain("(expected one of a, b)");
    expect(refusal(() => resolve(["--key", " "]))).toBe("invalid value for --key: it cannot be empty");
    expect(refusal(() => resolve(["--cont", "1"]))).toBe("unknown option '--cont' (see --help)");
    expect(refusal(() => resolve(["--count"]))).toBe("option --count needs a value");
  });
});

describe("the rows of every command", () => {
  test("say what they accept as data, and the parser enforces exactly that", () => {
    for (const [command, row] of allRows()) {
      const at = `${command} --${row.flag ?? flagName(row.key)}`;
      expect(describeOption(row).accepts, at).not.toBe("");
      expect(Array.isArray(row.default) === (row.repeatable === true), at).toBe(true);
      if (row.type === "integer") {
        expect(parseValue(row, String(row.min), "x"), at).toBe(row.min);
        expect(parseValue(row, String(row.max), "x"), at).toBe(row.max);
        if (row.min > 0) expect(() => parseValue(row, String(row.min - 1), "x"), at).toThrow(String(row.min));
        if (row.max < Number.MAX_SAFE_INTEGER) expect(() => parseValue(row, String(row.max + 1), "x"), at).toThrow();
      }
      if (row.type === "seconds" && row.min > 0) expect(() => parseValue(row, String(row.min / 2), "x"), at).toThrow();
      if (row.type === "choice") for (const c of row.choices) expect(parseValue(row, c, "x"), at).toBe(c);
      // A default must pass its own row's check (as given on the command line).
      const given = describeOption(row).default;
      if (given !== null && row.type !== "switch" && !row.repeatable)
        expect(() => parseValue(row, given, "x"), at).not.toThrow();
    }
  });

  test("--help marks repeatable flags and names every environment variable, legacy ones too", () => {
    const help = (flag: string) => String((RELAY_ARGS[flag] as { description?: string }).description);
    for (const flag of ["trust-proxy", "allow", "deny", "token", "cluster"]) expect(help(flag)).toContain("repeatable");
    expect(help("port")).not.toContain("repeatable");
    expect(help("max-instances")).toContain("env SOVA_RELAY_MAX_INSTANCES or SOVA_MAX_INSTANCES");
    expect(help("log-level")).toContain("RUST_LOG");
    expect(help("max-message-size")).toContain("64-4294967295 bytes");
    expect(help("handshake-timeout")).toContain("0.05 or more seconds; default 10");
  });

  test("describeOption gives the reference what --help shows", () => {
    const row = rowsOf(OPTIONS).find((o) => o.key === "trustProxy")!;
    expect(describeOption(row)).toEqual({
      flag: "--trust-proxy",
      env: ["SOVA_RELAY_TRUST_PROXY"],
      default: null,
      accepts: "CIDR, IPv4 or IPv6",
      repeatable: true,
      description: row.description,
    });
  });
});
