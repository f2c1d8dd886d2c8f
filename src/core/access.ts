/**
 * Sessions and tokens (docs/protocol.md, "Sessions and access"). A token is kept
 * only as its SHA-256 digest; a session is named everywhere (logs, pages,
 * metrics) by a short HMAC of it under a secret the relay holds, never by the
 * token. Without the secret, a session id says nothing about the token: an
 * unkeyed hash could be reversed offline by trying likely tokens.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const OPEN_SESSION = "open";
export const SESSION_SECRET_BYTES = 32;

export interface SessionKey {
  /** Map key and public name: the short keyed hash, or "open" when no token is required. */
  readonly id: string;
}

export interface Access {
  readonly required: boolean;
  /** The session this token opens, or null when it opens none. Constant time in the token. */
  admit(token: string | null): SessionKey | null;
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

export function sessionHash(token: string, secret: Uint8Array): string {
  return createHmac("sha256", secret).update(`sova-relay session:${token}`, "utf8").digest("hex").slice(0, 12);
}

/** `secret`: from --state-dir (stable across restarts), else fresh for this run. */
export function createAccess(
  tokens: readonly string[],
  secret: Uint8Array = randomBytes(SESSION_SECRET_BYTES),
): Access {
  const known = [...new Set(tokens)].map((t) => ({ digest: digest(t), key: { id: sessionHash(t, secret) } }));
  const open: SessionKey = { id: OPEN_SESSION };
  return {
    required: known.length > 0,
    admit(token) {
      if (known.length === 0) return open;
      // Digests have one length whatever the token's, and every known token is
      // compared, so neither timing nor early exit says how close a guess was.
      const offered = digest(token ?? "");
      let match: SessionKey | null = null;
      for (const k of known) if (timingSafeEqual(offered, k.digest) && token !== null) match = k.key;
      return match;
    },
  };
}
