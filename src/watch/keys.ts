/**
 * Spectator keys. A key is 24 random bytes (192 bits) in base64url, made here and
 * shown once; the relay keeps only its SHA-256 digest. Nothing ties a key to its
 * session's token or id: knowing either says nothing about the key, and the key
 * says nothing about them. A key offered in a URL is digested and compared with
 * every stored digest in constant time, so neither timing nor an early exit says
 * how close a guess was.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const KEY_BYTES = 24;
/** What a key looks like in a URL: base64url, 32 characters for 24 bytes. */
const KEY_SHAPE = /^[A-Za-z0-9_-]{32}$/;

export interface SpectatorGrant {
  /** The session's id as /status shows it: its 12-hex-digit hash, or "open". */
  session: string;
  /** SHA-256 of the key, hex. */
  digest: string;
}

export function makeKey(): string {
  return randomBytes(KEY_BYTES).toString("base64url");
}

export function keyDigest(key: string): string {
  return createHash("sha256").update(`sova-relay spectator:${key}`, "utf8").digest("hex");
}

export interface SpectatorKeys {
  /** Sessions that can be watched. */
  readonly sessions: ReadonlySet<string>;
  /** The session `key` opens, or null. */
  session(key: string): string | null;
}

export function spectatorKeys(grants: readonly SpectatorGrant[]): SpectatorKeys {
  const known = grants.map((g) => ({ digest: Buffer.from(g.digest, "hex"), session: g.session }));
  const sessions = new Set(grants.map((g) => g.session));
  return {
    sessions,
    session(key) {
      if (known.length === 0) return null;
      // Anything not shaped like a key is digested all the same: the answer takes as long.
      const offered = Buffer.from(keyDigest(key), "hex");
      const shaped = KEY_SHAPE.test(key);
      let found: string | null = null;
      for (const k of known) if (timingSafeEqual(offered, k.digest) && shaped) found = k.session;
      return found;
    },
  };
}
