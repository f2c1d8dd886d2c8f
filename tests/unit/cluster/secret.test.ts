/**
 * The pieces of the cluster's session secret that need no NATS (src/cluster/secret.ts):
 * --cluster-secret as configuration, and what a fingerprint gives away. Agreement
 * itself runs against real nats-server processes in tests/e2e/cluster-sessions.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createSecretAgreement, fingerprintOf, givenSecret } from "../../../src/cluster/secret.ts";
import { sessionHash } from "../../../src/core/access.ts";
import { resolveConfig } from "../../../src/host/config.ts";
import { isRelayError } from "../../../src/lib/errors.ts";
import { silentLogger } from "../../../src/lib/log.ts";
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

describe("before NATS answers", () => {
  const kept = randomBytes(32);

  test("a --cluster-secret that is not the key --state-dir kept stops start-up, naming the file", async () => {
    const a = createSecretAgreement(
      {
        given: givenSecret("our-band-secret-4f9a2c"),
        remembered: kept,
        keptIn: "/srv/state/session-key",
        tokens: true,
      },
      silentLogger,
    );
    await expect(a.ready).rejects.toThrow(
      /^--cluster-secret is not the session secret kept in \/srv\/state\/session-key/,
    );
    expect(a.state).toBe("refused");
  });

  test("NATS unreachable: a node starts on the secret it kept, a tokenless one on its own, one with tokens waits", async () => {
    const remembering = createSecretAgreement({ remembered: kept, tokens: true }, silentLogger);
    remembering.unreachable();
    expect(await remembering.ready).toEqual(kept);
    expect(remembering.state).toBe("unchecked");
    expect(remembering.fingerprint).toBe(fingerprintOf(kept));

    const open = createSecretAgreement({ tokens: false }, silentLogger);
    open.unreachable();
    expect(await open.ready).toHaveLength(32);

    const waiting = createSecretAgreement({ tokens: true }, silentLogger);
    waiting.unreachable();
    // A secret is taken at once when it is taken at all: none means start-up still waits.
    expect(waiting.secret).toBeNull();
    expect(waiting.fingerprint).toBe("");
    waiting.abandon();
    await expect(waiting.ready).rejects.toThrow(/stopped before/);
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
