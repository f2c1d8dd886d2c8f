/**
 * IPv4 and IPv6 address ranges for --allow and --deny. An IPv4 address that
 * reaches a dual-stack listener as `::ffff:a.b.c.d` matches IPv4 ranges too.
 */
import { isIP } from "node:net";
import { RelayError } from "../errors.ts";

export interface Cidr {
  readonly text: string;
  readonly v6: boolean;
  readonly base: bigint;
  readonly mask: bigint;
}

function v4ToBigInt(ip: string): bigint {
  return ip.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function v6ToBigInt(ip: string): bigint {
  let text = ip;
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hextets.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const v = v4ToBigInt(quad[1]!);
    text = `${text.slice(0, quad.index)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const parts = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part || "0", 16)), 0n);
}

/** An address as a number in the IPv6 space; IPv4 maps to ::ffff:0:0/96. */
export function addressValue(ip: string): bigint | null {
  const zoneless = ip.replace(/%.*$/, "");
  const kind = isIP(zoneless);
  if (kind === 4) return 0xffff00000000n | v4ToBigInt(zoneless);
  if (kind === 6) return v6ToBigInt(zoneless);
  return null;
}

export function parseCidr(text: string): Cidr {
  const [addr, prefixText] = text.trim().split("/") as [string, string | undefined];
  const kind = isIP(addr);
  if (kind === 0) throw new RelayError("E_CONFIG", `invalid address range '${text}' (expected e.g. 203.0.113.0/24 or 2001:db8::/32)`);
  const max = kind === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new RelayError("E_CONFIG", `invalid prefix length in '${text}' (expected 0-${max})`);
  }
  // IPv4 ranges live inside ::ffff:0:0/96, like the addresses they match.
  const bits = kind === 4 ? prefix + 96 : prefix;
  const mask = bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
  return { text: text.trim(), v6: kind === 6, base: addressValue(addr)! & mask, mask };
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const v = addressValue(ip);
  return v !== null && (v & cidr.mask) === cidr.base;
}

const V4_MAPPED = 0xffff00000000n;
const V4_MAPPED_MASK = ((1n << 128n) - 1n) ^ 0xffffffffn;

/**
 * The unit per-address limits count: an IPv4 address, or an IPv6 /64 (one
 * subscriber is usually handed a whole /64, so counting whole IPv6 addresses let
 * one host get around every per-address cap).
 */
export function addressGroup(ip: string): string {
  const v = addressValue(ip);
  if (v === null) return ip;
  if ((v & V4_MAPPED_MASK) === V4_MAPPED) return ip.replace(/^::ffff:/i, "");
  return `${(v >> 64n).toString(16).padStart(16, "0").replace(/(.{4})(?!$)/g, "$1:")}::/64`;
}
