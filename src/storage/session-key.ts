/**
 * The secret that session ids are keyed with (relay/access.ts). With
 * --state-dir it is made once, kept in DIR/session-key (mode 0600) and read
 * back at every start, so session ids, and the history database keyed by
 * them, survive restarts. Without, each start draws a new one.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import { SESSION_SECRET_BYTES } from "../core/access.ts";

export const SESSION_KEY_FILE = "session-key";

export function loadSessionSecret(stateDir: string): Uint8Array {
  const path = join(stateDir, SESSION_KEY_FILE);
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new RelayError(
      "E_CONFIG",
      `cannot create --state-dir '${stateDir}' (${(error as NodeJS.ErrnoException).code ?? "unwritable"})`,
    );
  }
  try {
    // "wx": two relays starting on one directory cannot both write a key.
    writeFileSync(path, `${randomBytes(SESSION_SECRET_BYTES).toString("hex")}\n`, { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new RelayError(
        "E_CONFIG",
        `cannot write '${path}' (${(error as NodeJS.ErrnoException).code ?? "unwritable"})`,
      );
    }
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
    // A key others can read lets them reverse session ids to tokens offline.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch (error) {
    throw new RelayError(
      "E_CONFIG",
      `cannot read '${path}' (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`,
    );
  }
  if (!/^[0-9a-f]{64}$/.test(text))
    throw new RelayError(
      "E_CONFIG",
      `'${path}' is not a session key (64 hex digits); move it away to make a new one (session ids change)`,
    );
  return Buffer.from(text, "hex");
}
