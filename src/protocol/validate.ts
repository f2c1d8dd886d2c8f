/**
 * rmp-serde 1.1.1's verdict on a value msgpackr decoded: the message it would
 * read, or its error text (serde's derive for structs and enums, uuid's and
 * Vec<u8>'s visitors, rmp-serde's depth limit). msgpackr hands over Maps (keys of
 * any type), BigInt for 64-bit integers and plain numbers for the rest, so a
 * number that is fractional, -0, or outside 32 bits can only have been a float.
 * What it cannot tell apart is listed in tests/unit/protocol/vectors.test.ts.
 */
import { EXT, RESERVED, decodeError, packBody, unpackFirst } from "./msgpack.ts";
import { INSTANCE_INFO, SCHEMA, SYSTEM_TIME, UPSTREAM_VARIANTS as UPSTREAM } from "./schema.ts";
import type { ByteArrayWire, Kind, Layout, Message, MessageType } from "./schema.ts";

/**
 * What a reader takes besides upstream's variants: `extensions` every variant of the schema (the client, the
 * tunnel), `accept` only these (the relay, from a tunnel that asked for resumption).
 */
export interface DecodeOptions {
  extensions?: boolean;
  accept?: readonly MessageType[];
}

/** Reads `body` with msgpackr and checks it as rmp-serde would. */
export function decodeGeneral(body: Uint8Array, options: DecodeOptions = {}): Message {
  const top = unpackFirst(body);
  if (!(top instanceof Map)) {
    // serde reads a lone value as a unit variant; every variant has fields.
    variantOf(top, options);
    throw decodeError("invalid type: unit variant, expected struct variant");
  }
  if (top.size !== 1) throw decodeError(`array had incorrect length, expected ${top.size}`);
  const [key, value] = (top as Map<unknown, unknown>).entries().next().value!;
  const type = variantOf(key, options);
  return { type, ...readStruct(SCHEMA[type], value, `struct variant RelayMessage::${type}`, MAX_DEPTH) } as Message;
}

/** rmp-serde's nesting limit: each array, map and ext inside the message counts. */
const MAX_DEPTH = 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const isFloat = (n: number) => !Number.isInteger(n) || Object.is(n, -0) || n >= 2 ** 32 || n < -(2 ** 31);
const isInt = (v: unknown): v is number | bigint => typeof v === "bigint" || (typeof v === "number" && !isFloat(v));
/** How Rust prints the floats JS prints otherwise (String(-0) is "0"). */
const FLOAT_TEXT: Record<string, string> = { Infinity: "inf", "-Infinity": "-inf", "0": "-0" };

/** What serde's `Unexpected` calls a value, as in "invalid type: {this}, expected ...". */
function describe(v: unknown): string {
  if (v === RESERVED) throw decodeError("wrong msgpack marker Reserved");
  if (v === null) return "unit value";
  if (typeof v === "boolean") return `boolean \`${v}\``;
  if (typeof v === "number" && isFloat(v)) return `floating point \`${FLOAT_TEXT[String(v)] ?? v}\``;
  if (isInt(v)) return `integer \`${v}\``;
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  if (v instanceof Uint8Array) return "byte array";
  return Array.isArray(v) ? "sequence" : v === EXT ? "newtype struct" : "map";
}

const invalidType = (v: unknown, expected: string) => decodeError(`invalid type: ${describe(v)}, expected ${expected}`);

function nested(depth: number): number {
  if (depth <= 1) throw decodeError("depth limit exceeded");
  return depth - 1;
}

function variantOf(v: unknown, options: DecodeOptions): MessageType {
  if (isInt(v) && v >= 0) {
    if (v < UPSTREAM.length) return UPSTREAM[Number(v)]!;
    throw decodeError(`invalid value: integer \`${v}\`, expected variant index 0 <= i < ${UPSTREAM.length}`);
  }
  if (typeof v !== "string" && !(v instanceof Uint8Array)) throw invalidType(v, "variant identifier");
  const name = typeof v === "string" ? v : new TextDecoder().decode(v);
  const known = Object.hasOwn(SCHEMA, name);
  if (known && (options.extensions === true || UPSTREAM.includes(name as MessageType))) return name as MessageType;
  if (known && options.accept?.includes(name as MessageType)) return name as MessageType;
  throw decodeError(`unknown variant \`${name}\`, expected one of ${UPSTREAM.map((t) => `\`${t}\``).join(", ")}`);
}

/** The field a key names, or undefined for one to skip; keys may be names, bin names or indexes. */
function fieldOf(layout: Layout, names: readonly string[], key: unknown): string | undefined {
  if (key instanceof Uint8Array) key = new TextDecoder().decode(key); // invalid UTF-8 names no field either
  if (typeof key === "string") return Object.hasOwn(layout, key) ? key : undefined;
  if (isInt(key) && key >= 0) return key < names.length ? names[Number(key)] : undefined;
  throw invalidType(key, "field identifier");
}

/** A struct given as a map (to_vec_named) or an array (to_vec), as serde's derive reads it. */
function readStruct(layout: Layout, v: unknown, what: string, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const names = Object.keys(layout).filter((n) => layout[n] !== "capabilities");
  if (v instanceof Map) {
    depth = nested(depth);
    for (const [key, value] of v as Map<unknown, unknown>) {
      const name = fieldOf(layout, names, key);
      if (name === undefined) skip(value, depth);
      else if (Object.hasOwn(out, name)) throw decodeError(`duplicate field \`${name}\``);
      else out[name] = read(layout[name]!, value, depth);
    }
  } else if (Array.isArray(v)) {
    depth = nested(depth);
    const n = names.length;
    for (let i = 0; i < Math.min(v.length, n); i++) out[names[i]!] = read(layout[names[i]!]!, v[i], depth);
    if (v.length < n) throw decodeError(`invalid length ${v.length}, expected ${what} with ${n} elements`);
    if (v.length > n) throw decodeError(`array had incorrect length, expected ${n}`);
  } else throw invalidType(v, what);
  for (const name in layout) {
    const kind = layout[name];
    if (Object.hasOwn(out, name)) continue;
    // serde: a missing Option is None; the extension field defaults to empty
    if (kind === "optString" || kind === "optUuid") out[name] = null;
    else if (kind === "capabilities") out[name] = [];
    else throw decodeError(`missing field \`${name}\``);
  }
  return out;
}

/** `[a, b]`: a tuple, as serde reads `(A, B)`. */
function readPair(e: unknown, a: Kind, b: Kind, depth: number): [unknown, unknown] {
  if (!Array.isArray(e)) throw invalidType(e, "a tuple of size 2");
  if (e.length !== 2) throw decodeError(`invalid length ${e.length}, expected a tuple of size 2`);
  nested(depth);
  return [read(a, e[0], depth), read(b, e[1], depth)];
}

/** What rmp-serde still checks in a value it ignores: its depth, and no 0xc1. */
function skip(v: unknown, depth: number): void {
  if (v === RESERVED) describe(v);
  if (!Array.isArray(v) && !(v instanceof Map) && v !== EXT) return;
  const inner = nested(depth);
  if (Array.isArray(v)) for (const e of v) skip(e, inner);
  else if (v instanceof Map) {
    for (const [k, e] of v as Map<unknown, unknown>) {
      skip(k, inner);
      skip(e, inner);
    }
  }
}

function uint(v: unknown, max: number | bigint, expected: string): number | bigint {
  if (!isInt(v)) throw invalidType(v, expected);
  if (v < 0 || v > max) throw decodeError(`invalid value: integer \`${v}\`, expected ${expected}`);
  return v;
}

function read(kind: Kind, v: unknown, depth: number): unknown {
  if (v === null && (kind === "optString" || kind === "optUuid")) return null;
  switch (kind) {
    case "string":
    case "optString":
      if (typeof v === "string") return v;
      if (!(v instanceof Uint8Array)) throw invalidType(v, "a string");
      try {
        return utf8.decode(v);
      } catch {
        throw decodeError("invalid value: byte array, expected a string");
      }
    case "uuid":
    case "optUuid":
      if (!(v instanceof Uint8Array)) throw invalidType(v, "bytes");
      if (v.length === 16) return new Uint8Array(v); // a copy: msgpackr gives views, and Buffer's slice() is one
      throw decodeError(`UUID parsing failed: invalid length: expected 16 bytes, found ${v.length}`);
    case "u64":
      return BigInt(uint(v, 2n ** 64n - 1n, "u64"));
    case "u32":
      return Number(uint(v, 0xffffffff, "u32"));
    case "bool":
      if (typeof v !== "boolean") throw invalidType(v, "a boolean");
      return v;
    case "time":
      return readStruct(SYSTEM_TIME, v, "struct SystemTime", depth);
    case "bytes":
      if (!(v instanceof Uint8Array)) throw invalidType(v, "bytes");
      return new Uint8Array(v);
  }
  if (!Array.isArray(v)) throw invalidType(v, "a sequence");
  const inner = nested(depth);
  if (kind === "byteArray") return packBody(v.map((e) => Number(uint(e, 255, "u8")))) as ByteArrayWire;
  if (kind === "capabilities") return v.map((e) => read("string", e, inner));
  if (kind === "cursor") return v.map((e) => readPair(e, "string", "u64", inner));
  if (kind === "members") return v.map((e) => readPair(e, "uuid", "string", inner));
  return v.map((e) => readStruct(INSTANCE_INFO, e, "struct InstanceInfo", inner));
}
