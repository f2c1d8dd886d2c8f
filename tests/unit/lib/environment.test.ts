/** Stray `SOVA_RELAY_*` names (src/lib/environment.ts): whose they are, or what was meant. */
import { describe, expect, test } from "bun:test";
import { checkEnvironment, closestName, editDistance, strayNames } from "../../../src/lib/environment.ts";

const RELAY = { command: "relay", names: ["SOVA_RELAY_TOKENS", "SOVA_RELAY_PORT", "SOVA_RELAY_TLS_CERT", "RUST_LOG"] };
const TUNNEL = { command: "relay tunnel", names: ["SOVA_RELAY_LISTEN", "SOVA_RELAY_TO"] };

describe("closest names", () => {
  test("edit distance counts a swap of neighbours as one", () => {
    expect(editDistance("PORT", "PROT")).toBe(1);
    expect(editDistance("TOKEN", "TOKENS")).toBe(1);
    expect(editDistance("", "ABC")).toBe(3);
  });

  test("a near spelling, or a name the start of another; nothing when nothing is near", () => {
    expect(closestName("SOVA_RELAY_TOKEN", RELAY.names)).toBe("SOVA_RELAY_TOKENS");
    expect(closestName("SOVA_RELAY_PROT", RELAY.names)).toBe("SOVA_RELAY_PORT");
    expect(closestName("SOVA_RELAY_TLS_CERTIFICATE", RELAY.names)).toBe("SOVA_RELAY_TLS_CERT");
    expect(closestName("SOVA_RELAY_VERBOSE", RELAY.names)).toBeNull();
  });
});

describe("stray names", () => {
  test("only SOVA_RELAY_* names are looked at; another command's name says whose it is", () => {
    const env = {
      SOVA_RELAY_PORT: "1",
      SOVA_RELAY_TOKEN: "secret-value-never-shown",
      SOVA_RELAY_LISTEN: "x",
      PATH: "/bin",
      SOVA_OTHER: "1",
    };
    expect(strayNames(env, RELAY, [TUNNEL])).toEqual([
      "SOVA_RELAY_LISTEN is read by `relay tunnel`, not by `relay`",
      "SOVA_RELAY_TOKEN is not a setting of `relay`; did you mean SOVA_RELAY_TOKENS?",
    ]);
    expect(strayNames(env, RELAY, [TUNNEL], ["SOVA_RELAY_LISTEN", "SOVA_RELAY_TOKEN"])).toEqual([]);
  });

  test("checkEnvironment: one line, exit code 2 (E_CONFIG), no value in it", () => {
    let error: unknown;
    try {
      checkEnvironment({ SOVA_RELAY_TOKEN: "secret-value-never-shown" }, RELAY, [TUNNEL]);
    } catch (e) {
      error = e;
    }
    expect((error as { code: string }).code).toBe("E_CONFIG");
    expect((error as Error).message).toContain("did you mean SOVA_RELAY_TOKENS?");
    expect((error as Error).message).not.toContain("secret-value");
    expect((error as Error).message).not.toContain("\n");
    expect(() => checkEnvironment({ SOVA_RELAY_PORT: "1" }, RELAY, [TUNNEL])).not.toThrow();
  });
});
