/**
 * Sessions and tokens (PROTOCOL.md, "Sessions and access"). A token is kept
 * only as its SHA-256 digest; a session is named everywhere (logs, pages,
 * metrics) by a short hash of it, never by the token.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export const OPEN_SESSION = "open";

export interface SessionKey {
  /** Map key and public name: the short hash, or "open" when no token is required. */
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

export function sessionHash(token: string): string {
  return digest(`sova-relay session:${token}`).toString("hex").slice(0, 12);
}

export function createAccess(tokens: readonly string[]): Access {
  const known = [...new Set(tokens)].map((t) => ({ digest: digest(t), key: { id: sessionHash(t) } }));
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
