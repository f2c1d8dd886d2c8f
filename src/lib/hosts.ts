/**
 * Which requests the HTTP endpoints answer, by the name they were sent to, and
 * which web pages may open a WebSocket on /relay.
 *
 * A page on any web site can make a visitor's browser talk to the relay on the
 * visitor's own machine (a musician hosting on their laptop) by pointing its own
 * name at 127.0.0.1 (DNS rebinding); the browser then sends that site's name in
 * `Host`. So the status page, /status, /events and /metrics answer only when
 * `Host` is an IP address, `localhost`, a name without a dot (a container's
 * or a LAN host's name: a page cannot point one at the relay, since rebinding
 * needs a name in the page's own domain), or a name the host allowed
 * (--allow-host); anything else gets 421 saying how to allow it. /healthz
 * answers whatever the name (orchestrators probe it by any name; it tells
 * nothing), and /relay has its own check (the `Origin` every browser sends).
 */
import { isIP } from "node:net";

/** The name in a Host header, lower case, without port or brackets; "" when there is none. */
export function hostOf(header: string | null): string {
  if (header === null) return "";
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") === -1 ? undefined : h.indexOf("]"));
  const colon = h.lastIndexOf(":");
  return (colon === -1 ? h : h.slice(0, colon)).replace(/\.$/, "");
}

/** True when a request naming `header` may be answered. */
export function hostAllowed(header: string | null, allowed: ReadonlySet<string>): boolean {
  const name = hostOf(header);
  // No Host (HTTP/1.0, a hand-made request): no browser sends that.
  if (name === "" || isIP(name) !== 0) return true;
  if (name === "localhost" || name.endsWith(".localhost") || !name.includes(".")) return true;
  return allowed.has(name);
}

/** The name as it may be echoed in a refusal: the characters a host name has, at most 64. */
export function shownHost(header: string | null): string {
  return hostOf(header)
    .replace(/[^a-z0-9.-]/g, "?")
    .slice(0, 64);
}

/**
 * Whether a page with this `Origin` may open /relay: none (Sova, the tunnel), one the host allowed, or the
 * relay's own pages (the origin names the host the request was sent to, and that host is one answered above,
 * so a rebound name is not).
 */
export function originAllowed(
  origin: string | null,
  host: string | null,
  allowedOrigins: ReadonlySet<string>,
  allowedHosts: ReadonlySet<string>,
): boolean {
  if (origin === null) return true;
  const o = origin.trim().toLowerCase();
  if (allowedOrigins.has(o)) return true;
  let sameHost = false;
  try {
    sameHost = host !== null && new URL(o).host === host.trim().toLowerCase();
  } catch {
    sameHost = false;
  }
  return sameHost && hostAllowed(host, allowedHosts);
}

/**
 * A request's URL. Without a Host header (HTTP/1.0, a plain health probe) Bun's `req.url` is the bare
 * path, which `new URL` refuses: every such request was a 500 and an ERROR line, though hostAllowed lets
 * it through by design. The base only completes it; the relay never reads the host from here.
 */
export function requestUrl(req: { url: string }): URL {
  return new URL(req.url, "http://host.invalid");
}
