/**
 * The pieces of the cluster's session secret that need no NATS (src/cluster/secret.ts):
 * --cluster-secret as configuration, and what a fingerprint gives away. Agreement
 * itself runs against real nats-server processes in tests/e2e/cluster-sessions.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { fingerprintOf, givenSecret } from "../../../src/cluster/secret.ts";
import { sessionHash } from "../../../src/core/access.ts";
import { resolveConfig } from "../../../src/host/config.ts";
import { isRelayError } from "../../../src/lib/errors.ts";
import { createTally } from "../../../src/lib/repeats.ts";

function configError(argv: string[], env: Record<string, string> = {}): string {
  try {
    resolveConfig(argv, env);
  } catch (error) {
    expect(isRelayError(error, "E_CONFIG")).toBe(true);
    return (error as Error).message;
  }
  throw new Error("accepted");
}

describe("--cluster-secret", () => {
  test("from the flag or SOVA_RELAY_CLUSTER_SECRET; the same text gives every node the same secret", () => {
    const text = "our-band-secret-4f9a2c";
    expect(resolveConfig(["--cluster-secret", text]).clusterSecret).toBe(text);
    expect(resolveConfig([], { SOVA_RELAY_CLUSTER_SECRET: text }).clusterSecret).toBe(text);
    expect(givenSecret(text)).toEqual(givenSecret(text));
    expect(givenSecret(text)).not.toEqual(givenSecret(`${text}.`));
    expect(givenSecret(text)).toHaveLength(32);
  });

  test("one easy to guess is refused, and the message never repeats it", () => {
    const message = configError([], { SOVA_RELAY_CLUSTER_SECRET: "aaaabbbbccccdddd" });
    expect(message).toMatch(/^--cluster-secret is too easy to guess/);
    expect(message).not.toContain("aaaabbbb");
    expect(configError(["--cluster-secret", "short"])).not.toContain("short");
  });
});

describe("fingerprints", () => {
  test("one per secret, and neither the secret nor any session id in it", () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    expect(fingerprintOf(a)).toBe(fingerprintOf(Buffer.from(a)));
    expect(fingerprintOf(a)).not.toBe(fingerprintOf(b));
    const hex = a.toString("hex");
    const print = fingerprintOf(a);
    expect(hex).not.toContain(print);
    expect(print).not.toBe(sessionHash("sova-relay cluster fingerprint", a));
  });
});

describe("createTally", () => {
  test("the first occurrence is logged at once; the rest add up into the first line after the window", () => {
    const t = createTally(10_000);
    expect(t.add(2, 0)).toBe(2);
    expect(t.add(1, 5_000)).toBe(0);
    expect(t.add(3, 9_999)).toBe(0);
    expect(t.add(1, 10_000)).toBe(5);
    expect(t.add(1, 10_001)).toBe(0);
  });
});
