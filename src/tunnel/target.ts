/**
 * Where the tunnel carries Sova's connection: the relay addresses given to
 * --to (one, or a cluster's nodes), and one line saying why one could not be
 * reached, naming what the player can fix.
 */
import tls from "node:tls";
import { RelayError } from "../lib/errors.ts";

export type TunnelScheme = "ws" | "wss" | "tls" | "tcp";

export interface TunnelTarget {
  scheme: TunnelScheme;
  host: string;
  port: number;
  /** The WebSocket URL (ws/wss), or `tls://host:port` / `tcp://host:port`. */
  url: string;
  /** `url` for logs: without a user name or password, should the URL carry one. */
  shown: string;
}

const DEFAULT_PORTS: Record<TunnelScheme, number> = { ws: 80, wss: 443, tls: 9443, tcp: 9090 };
const CERT_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|HOSTNAME|CHAIN/;

export function configError(message: string): never {
  throw new RelayError("E_CONFIG", message);
}

export const isWebSocket = (t: TunnelTarget): boolean => t.scheme === "ws" || t.scheme === "wss";

export function parseTarget(raw: string): TunnelTarget {
  // What error messages echo: never a password given in the URL.
  const text = raw.replace(/\/\/[^@/]*@/, "//***@");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    configError(
      `invalid value for --to: '${text}'` +
        ` (expected wss://host/relay, ws://host:port/relay, tls://host:port or tcp://host:port)`,
    );
  }
  const scheme = url.protocol.replace(/:$/, "") as TunnelScheme;
  if (!(scheme in DEFAULT_PORTS))
    configError(`invalid value for --to: '${text}' (the scheme must be wss, ws, tls or tcp)`);
  if (url.hostname === "") configError(`invalid value for --to: '${text}' (no host)`);
  const port = url.port === "" ? DEFAULT_PORTS[scheme] : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const ws = scheme === "ws" || scheme === "wss";
  // `wss://relay.example.org` means the relay's endpoint, not the proxy's root page.
  if (ws && url.pathname === "/") url.pathname = "/relay";
  const href = ws ? url.href : `${scheme}://${url.host}${url.port === "" ? `:${port}` : ""}`;
  url.username = "";
  url.password = "";
  if (url.search !== "") url.search = "?***";
  return {
    scheme,
    host,
    port,
    url: href,
    shown: ws ? url.href : `${scheme}://${url.host}${url.port === "" ? `:${port}` : ""}`,
  };
}

/** Every address of --to (repeated, or comma-separated): the nodes of a cluster, tried in turn. */
export function parseTargets(raw: readonly string[]): TunnelTarget[] {
  const items = raw.flatMap((r) => r.split(",")).map((r) => r.trim());
  if (items.length === 0 || items.some((r) => r === "")) configError("invalid value for --to: an empty address");
  return items.map(parseTarget);
}

/**
 * Bun's bundled roots and the operating system's trust store (a company or university CA installed there counts).
 * Bun's "default" set holds the bundled roots (and NODE_EXTRA_CA_CERTS) but not the system's unless told to: a
 * player's machine that trusts the relay's CA in its own store was refused, so the system's are asked for too.
 */
export function defaultRoots(): string[] | undefined {
  try {
    const get = (tls as unknown as { getCACertificates?: (type: string) => string[] }).getCACertificates;
    if (!get) return undefined;
    return [...new Set([...get("default"), ...get("system")])];
  } catch {
    return undefined;
  }
}

/** One line saying why the far side could not be reached, and what to do when the user can do something. */
export function describeFailure(
  target: TunnelTarget,
  code: string | undefined,
  message: string,
  hasCa: boolean,
): { reason: string; text: string } {
  const where = `${target.host}:${target.port}`;
  const c = code ?? "";
  if (CERT_CODES.test(c) || /certificate/i.test(message)) {
    const detail = message.replace(/^.*TLS handshake failed: /, "");
    return {
      reason: "certificate",
      text:
        `${where}'s certificate is not trusted (${c || "TLS"}: ${detail})` +
        `${hasCa ? "; check --ca" : "; for a private CA pass --ca FILE"}`,
    };
  }
  if (c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "EAI_NONAME" || c.startsWith("DNS"))
    return { reason: "dns", text: `cannot resolve ${target.host} (${c})` };
  if (c === "ECONNREFUSED") return { reason: "refused", text: `connection refused by ${where}` };
  if (c === "ETIMEDOUT" || c === "timeout") return { reason: "timeout", text: `no answer from ${where} (${message})` };
  if (c === "EHOSTUNREACH" || c === "ENETUNREACH")
    return { reason: "unreachable", text: `${where} is unreachable (${c})` };
  const status = /Expected 101 status code: (\d+)/.exec(message);
  if (status)
    return {
      reason: "http",
      text:
        `${target.shown} refused the WebSocket upgrade with HTTP ${status[1]}` +
        ` (wrong path, a proxy without WebSocket support,` +
        ` or an address the relay refuses)`,
    };
  return {
    reason: "other",
    text:
      `cannot reach ${where}: ${c ? `${c}: ` : ""}` +
      `${message.replace(/^WebSocket connection to '[^']*' failed: /, "")}`,
  };
}
