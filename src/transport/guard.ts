/**
 * Who may connect and register (docs/protocol.md, "Limits": what this relay adds per address):
 * --allow/--deny ranges, a cap on open connections per address group, and a
 * budget of failed registrations per address group, so tokens cannot be
 * guessed quickly. An address group is an IPv4 address or an IPv6 /64
 * (addressGroup). Decisions only, with the clock passed in: the server closes
 * what this refuses. State is swept so a scan from many addresses cannot grow
 * it without end.
 *
 * Failed registrations are a token bucket per group: `maxFailedRegistrations`
 * in a burst, earned back at that many a minute. Once the bucket is empty,
 * EVERY registration from the group is refused for `cooldownMs`, right token
 * or not: were a right token let through, a guesser could go on guessing at
 * full speed and learn from the answer which guess was right. The cool-down
 * is seconds, not minutes, so a typo by one player behind a NAT costs the
 * others little, while a guesser gets a burst and then about one guess per
 * cool-down, never more than the refill rate.
 */
import { addressGroup, cidrContains, type Cidr } from "../lib/cidr.ts";

export type Refusal = "denied" | "not_allowed" | "per_ip_limit";

export interface GuardOptions {
  allow: readonly Cidr[];
  deny: readonly Cidr[];
  /** Open connections per address group. */
  maxConnectionsPerIp: number;
  /** Failed registrations per address group in a burst, and earned back per minute. */
  maxFailedRegistrations: number;
  /** Registrations from a group are all refused this long once its failures are used up. */
  cooldownMs: number;
}

export interface Guard {
  /** Null when the address may connect (and is then counted as open). */
  admit(ip: string, now: number): Refusal | null;
  release(ip: string): void;
  /** Milliseconds before a registration from this address is considered again; 0: now. */
  registrationWait(ip: string, now: number): number;
  /** Records a failed registration; true when it starts a cool-down. */
  registrationFailed(ip: string, now: number): boolean;
  /** At most once a minute per address group, so a scanner cannot flood the log. */
  shouldLog(ip: string, now: number): boolean;
  sweep(now: number): void;
  readonly tracked: number;
}

const MINUTE = 60_000;

interface Bucket {
  tokens: number;
  at: number;
}

export function createGuard(options: GuardOptions): Guard {
  const open = new Map<string, number>();
  const buckets = new Map<string, Bucket>();
  const cooldownUntil = new Map<string, number>();
  const lastLogged = new Map<string, number>();
  const capacity = options.maxFailedRegistrations;

  function refilled(b: Bucket, now: number): number {
    return Math.min(capacity, b.tokens + (Math.max(0, now - b.at) * capacity) / MINUTE);
  }

  return {
    admit(ip, _now) {
      if (options.deny.some((c) => cidrContains(c, ip))) return "denied";
      if (options.allow.length > 0 && !options.allow.some((c) => cidrContains(c, ip))) return "not_allowed";
      const group = addressGroup(ip);
      const count = open.get(group) ?? 0;
      if (count >= options.maxConnectionsPerIp) return "per_ip_limit";
      open.set(group, count + 1);
      return null;
    },
    release(ip) {
      const group = addressGroup(ip);
      const count = (open.get(group) ?? 1) - 1;
      if (count <= 0) open.delete(group);
      else open.set(group, count);
    },
    registrationWait(ip, now) {
      const until = cooldownUntil.get(addressGroup(ip));
      return until !== undefined && until > now ? until - now : 0;
    },
    registrationFailed(ip, now) {
      const group = addressGroup(ip);
      const b = buckets.get(group) ?? { tokens: capacity, at: now };
      b.tokens = refilled(b, now) - 1;
      b.at = now;
      buckets.set(group, b);
      if (b.tokens >= 1) return false;
      cooldownUntil.set(group, now + options.cooldownMs);
      return true;
    },
    shouldLog(ip, now) {
      const group = addressGroup(ip);
      const last = lastLogged.get(group);
      if (last !== undefined && now - last < MINUTE) return false;
      lastLogged.set(group, now);
      return true;
    },
    sweep(now) {
      for (const [group, b] of buckets) if (refilled(b, now) >= capacity) buckets.delete(group);
      for (const [group, until] of cooldownUntil) if (until <= now) cooldownUntil.delete(group);
      for (const [group, at] of lastLogged) if (now - at >= MINUTE) lastLogged.delete(group);
    },
    get tracked() {
      return open.size + buckets.size + cooldownUntil.size + lastLogged.size;
    },
  };
}
