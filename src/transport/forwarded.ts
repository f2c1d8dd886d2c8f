/**
 * Who a WebSocket client is when it comes through a reverse proxy: the proxy's
 * X-Forwarded-For or Forwarded (RFC 7239) header, believed only from the
 * addresses --trust-proxy names.
 */
import { isIP } from "node:net";
import { cidrContains, type Cidr } from "../lib/cidr.ts";

/** RFC 7239 `for=` values, in order: `for=192.0.2.1`, `for="[2001:db8::1]:4711"`. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(",")) {
    for (const pair of element.split(";")) {
      const [k, v] = pair.split("=", 2) as [string, string | undefined];
      if (k.trim().toLowerCase() !== "for" || v === undefined) continue;
      out.push(v.trim().replace(/^"|"$/g, ""));
    }
  }
  return out;
}

/** An address from a header entry without its port or brackets; null when it is not an IP (`unknown`, `_hidden`). */
function bareAddress(entry: string): string | null {
  let a = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(":"));
  return isIP(a) === 0 ? null : a;
}

/**
 * The client's address: the direct peer's, unless that peer is a trusted proxy;
 * then the right-most address in X-Forwarded-For (or Forwarded) that is not itself
 * a trusted proxy. Entries further left were written by the client and prove nothing.
 */
export function clientAddress(direct: string, headers: Headers, trustProxy: readonly Cidr[]): string {
  const trusted = (ip: string) => trustProxy.some((c) => cidrContains(c, ip));
  if (trustProxy.length === 0 || !trusted(direct)) return direct;
  const xff = headers.get("x-forwarded-for");
  const fwd = headers.get("forwarded");
  const chain = xff !== null ? xff.split(",") : fwd !== null ? forwardedFor(fwd) : [];
  for (let i = chain.length - 1; i >= 0; i--) {
    const ip = bareAddress(chain[i]!);
    if (ip === null) return direct;
    if (!trusted(ip)) return ip;
    if (i === 0) return ip;
  }
  return direct;
}
