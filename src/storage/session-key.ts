/**
 * The secret that session ids are keyed with (core/access.ts), kept in
 * DIR/session-key (mode 0600) so that session ids, and the history keyed by them,
 * survive restarts. A relay alone makes it at its first start with --state-dir; a
 * cluster node keeps there the secret the cluster agreed on (cluster/secret.ts).
 * Without --state-dir a relay alone draws a new one at each start.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import { SESSION_SECRET_BYTES } from "../core/access.ts";

export const SESSION_KEY_FILE = "session-key";

const codeOf = (error: unknown, otherwise: string) => (error as NodeJS.ErrnoException).code ?? otherwise;

export function sessionKeyPath(stateDir: string): string {
  return join(stateDir, SESSION_KEY_FILE);
}

/** The kept secret, or null when there is none yet. */
export function readSessionSecret(stateDir: string): Uint8Array | null {
  const path = sessionKeyPath(stateDir);
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
    // A key others can read lets them reverse session ids to tokens offline.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch (error) {
    if (codeOf(error, "") === "ENOENT") return null;
    throw new RelayError("E_CONFIG", `cannot read '${path}' (${codeOf(error, "unreadable")})`);
  }
  if (!/^[0-9a-f]{64}$/.test(text))
    throw new RelayError(
      "E_CONFIG",
      `'${path}' is not a session key (64 hex digits); move it away to make a new one (session ids change)`,
    );
  return Buffer.from(text, "hex");
}

/**
 * Keeps `secret` unless a key is there already ("wx": two relays starting on one directory cannot both write one);
 * returns the kept one, which is `secret` or the one that was there.
 */
export function keepSessionSecret(stateDir: string, secret: Uint8Array): Uint8Array {
  const path = sessionKeyPath(stateDir);
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new RelayError("E_CONFIG", `cannot create --state-dir '${stateDir}' (${codeOf(error, "unwritable")})`);
  }
  try {
    writeFileSync(path, `${Buffer.from(secret).toString("hex")}\n`, { flag: "wx", mode: 0o600 });
    return secret;
  } catch (error) {
    if (codeOf(error, "") !== "EEXIST")
      throw new RelayError("E_CONFIG", `cannot write '${path}' (${codeOf(error, "unwritable")})`);
  }
  return readSessionSecret(stateDir)!;
}

/** A relay alone: the kept secret, made at the first start. */
export function loadSessionSecret(stateDir: string): Uint8Array {
  return keepSessionSecret(stateDir, randomBytes(SESSION_SECRET_BYTES));
}
