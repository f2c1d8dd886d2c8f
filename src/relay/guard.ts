/**
 * Who may connect (PROTOCOL.md leaves this to the relay): --allow/--deny
 * ranges, a cap on connections per address, and a cool-down for addresses
 * whose registrations keep failing, so tokens cannot be guessed quickly.
 * Decisions only: the server closes what this refuses. State is swept so a
 * scan from many addresses cannot grow it without end.
 */
import { cidrContains, type Cidr } from "../net/cidr.ts";

export type Refusal = "denied" | "not_allowed" | "per_ip_limit" | "cooldown";

export interface GuardOptions {
  allow: readonly Cidr[];
  deny: readonly Cidr[];
  maxConnectionsPerIp: number;
  /** Failed registrations per address per minute before the cool-down. */
  maxFailedRegistrations: number;
  cooldownMs: number;
}

export interface Guard {
  /** Null when the address may connect (and is then counted as open). */
  admit(ip: string, now: number): Refusal | null;
  release(ip: string): void;
  /** Records a failed registration; true when it starts a cool-down. */
  registrationFailed(ip: string, now: number): boolean;
  /** At most once a minute per address, so a scanner cannot flood the log. */
  shouldLog(ip: string, now: number): boolean;
  sweep(now: number): void;
  readonly tracked: number;
}

const MINUTE = 60_000;

export function createGuard(options: GuardOptions): Guard {
  const open = new Map<string, number>();
  const failures = new Map<string, { since: number; count: number }>();
  const cooldownUntil = new Map<string, number>();
  const lastLogged = new Map<string, number>();

  return {
    admit(ip, now) {
      if (options.deny.some((c) => cidrContains(c, ip))) return "denied";
      if (options.allow.length > 0 && !options.allow.some((c) => cidrContains(c, ip))) return "not_allowed";
      const until = cooldownUntil.get(ip);
      if (until !== undefined && until > now) return "cooldown";
      const count = open.get(ip) ?? 0;
      if (count >= options.maxConnectionsPerIp) return "per_ip_limit";
      open.set(ip, count + 1);
      return null;
    },
    release(ip) {
      const count = (open.get(ip) ?? 1) - 1;
      if (count <= 0) open.delete(ip);
      else open.set(ip, count);
    },
    registrationFailed(ip, now) {
      let f = failures.get(ip);
      if (!f || now - f.since >= MINUTE) {
        f = { since: now, count: 0 };
        failures.set(ip, f);
      }
      f.count++;
      if (f.count > options.maxFailedRegistrations) {
        cooldownUntil.set(ip, now + options.cooldownMs);
        failures.delete(ip);
        return true;
      }
      return false;
    },
    shouldLog(ip, now) {
      const last = lastLogged.get(ip);
      if (last !== undefined && now - last < MINUTE) return false;
      lastLogged.set(ip, now);
      return true;
    },
    sweep(now) {
      for (const [ip, f] of failures) if (now - f.since >= MINUTE) failures.delete(ip);
      for (const [ip, until] of cooldownUntil) if (until <= now) cooldownUntil.delete(ip);
      for (const [ip, at] of lastLogged) if (now - at >= MINUTE) lastLogged.delete(ip);
    },
    get tracked() {
      return open.size + failures.size + cooldownUntil.size + lastLogged.size;
    },
  };
}
