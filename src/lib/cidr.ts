/**
 * IPv4 and IPv6 address ranges for --allow and --deny, the groups the
 * per-address limits count, and addresses as public pages show them. An IPv4
 * address that reaches a dual-stack listener as `::ffff:a.b.c.d` is IPv4 here.
 */
import { isIP } from "node:net";
import { RelayError } from "./errors.ts";

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
  // Bun leaves remoteAddress undefined on a socket that closed before it was read.
  if (typeof ip !== "string") return null;
  const zoneless = ip.replace(/%.*$/, "");
  const kind = isIP(zoneless);
  if (kind === 4) return 0xffff00000000n | v4ToBigInt(zoneless);
  if (kind === 6) return v6ToBigInt(zoneless);
  return null;
}

export function parseCidr(text: string): Cidr {
  const [addr, prefixText] = text.trim().split("/") as [string, string | undefined];
  const kind = isIP(addr);
  if (kind === 0)
    throw new RelayError("E_CONFIG", `invalid address range '${text}' (expected e.g. 203.0.113.0/24 or 2001:db8::/32)`);
  const max = kind === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (
    !Number.isInteger(prefix) ||
    prefix < 0 ||
    prefix > max ||
    (prefixText !== undefined && !/^\d+$/.test(prefixText))
  ) {
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
const V4_SPACE = (1n << 32n) - 1n;

function v4Text(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
}

function hextets(v: bigint, count: number): string[] {
  return Array.from({ length: count }, (_, i) => ((v >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
}

/**
 * The unit the per-address limits count: an IPv4 address, or an IPv6 /64.
 * One IPv6 customer (a home, a VPS) is usually handed a whole /64 and can
 * pick any address in it, so counting single IPv6 addresses counts nothing.
 */
export function addressGroup(ip: string): string {
  // A plain IPv4 address is its own group (isIP accepts only the canonical dotted form): the way through BigInts
  // made some fifty objects, three times per connection, which a connect flood turned into most of the heap's garbage.
  if (isIP(ip) === 4) return ip;
  const v = addressValue(ip);
  if (v === null) return ip;
  if (v >> 32n === V4_MAPPED >> 32n) return v4Text(v & V4_SPACE);
  return `${hextets(v, 4).join(":")}::/64`;
}

/**
 * An address as unauthenticated pages show it: the IPv4 /16 (203.0.x.x) or the
 * IPv6 /32 (2001:db8:x:x:x:x:x:x). Enough to tell players' providers apart when
 * something goes wrong, not enough to find anyone: an IPv4 /16 is 65,536
 * addresses, an IPv6 /32 is a provider's whole allocation.
 */
export function maskedAddress(ip: string): string {
  const v = addressValue(ip);
  if (v === null) return "x";
  if (v >> 32n === V4_MAPPED >> 32n) {
    const parts = v4Text(v & V4_SPACE).split(".");
    return `${parts[0]}.${parts[1]}.x.x`;
  }
  return `${hextets(v, 2).join(":")}:x:x:x:x:x:x`;
}
