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
  /**
   * The resumption secret of one instance (docs/resume.md): an HMAC, under a key derived from the session secret
   * with its own label, of the session, the instance's ID and its name. Any relay holding the same session secret
   * (a restart with --state-dir, another node of the cluster) can check it; nobody without it can make one.
   */
  resumeSecret(session: string, id: string, nameKey: string): Uint8Array;
  /** Constant time in the offered secret. */
  checkResumeSecret(session: string, id: string, nameKey: string, offered: Uint8Array): boolean;
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
  // A key of its own: a resumption secret never says anything about session ids, nor they about it.
  const resumeKey = createHmac("sha256", secret).update("sova-relay resume key v1", "utf8").digest();
  const resumeSecret = (session: string, id: string, nameKey: string) =>
    new Uint8Array(createHmac("sha256", resumeKey).update(`${session}\u0000${id}\u0000${nameKey}`, "utf8").digest());
  return {
    required: known.length > 0,
    resumeSecret,
    checkResumeSecret(session, id, nameKey, offered) {
      const expected = resumeSecret(session, id, nameKey);
      return offered.length === expected.length && timingSafeEqual(offered, expected);
    },
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
