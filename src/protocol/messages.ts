/**
 * The relay's messages and their rmp-serde encoding (PROTOCOL.md, "Messages").
 * SCHEMA below is the one statement of the wire layout: the types, the encoder
 * (msgpackr writes map keys in the order given, which is the Rust struct order
 * `to_vec_named` uses), the validator and the StateUpdate fast path derive from it.
 */
import { fastReader } from "./fast-update.ts";
import { ByteWriter, EXT, RESERVED, Splice, arrayHeader, decodeError, packBody, packFrame, packView, u64, unpackFirst } from "./msgpack.ts";

/** 16 bytes; sent as `bin 16`, never as a string. */
export type Uuid = Uint8Array;

/**
 * `update_data` as rmp-serde encodes a `Vec<u8>` (an array of fixint / 0xcc XX),
 * kept encoded so the relay copies it into broadcasts without a decode/encode.
 */
export type ByteArrayWire = Uint8Array & { readonly __byteArrayWire: true };

interface KindTypes {
  string: string;
  optString: string | null;
  /** Extension: absent for today's Sova instances, and only written when not empty. */
  capabilities: string[];
  u64: bigint;
  u32: number;
  bool: boolean;
  uuid: Uuid;
  optUuid: Uuid | null;
  byteArray: ByteArrayWire;
  instances: InstanceInfo[];
  time: SystemTime;
}
type Kind = keyof KindTypes;
type Layout = Readonly<Record<string, Kind>>;
type Fields<L extends Layout> = { -readonly [K in keyof L]: KindTypes[L[K]] };

const SYSTEM_TIME = { secs_since_epoch: "u64", nanos_since_epoch: "u32" } as const;
const INSTANCE_INFO = { id: "uuid", name: "string", version: "string", connected_at: "time", last_activity: "time" } as const;

/** Upstream's enum `RelayMessage`, variants in declaration order (serde also accepts an index), then ours. */
export const SCHEMA = {
  RegisterInstance: { instance_name: "string", version: "string", session_token: "optString", capabilities: "capabilities" },
  RegistrationResponse: { success: "bool", message: "string", assigned_id: "optUuid", current_instances: "instances" },
  StateUpdate: { source_instance_id: "uuid", timestamp: "u64", update_data: "byteArray" },
  StateBroadcast: { source_instance_name: "string", timestamp: "u64", update_data: "byteArray" },
  InstanceDisconnected: { instance_id: "uuid", instance_name: "string" },
  Ping: { timestamp: "u64" },
  Pong: { timestamp: "u64" },
  Error: { message: "string" },
  /** Extension: only for instances that asked for "presence". */
  InstanceConnected: { instance_id: "uuid", instance_name: "string" },
} as const;

export type MessageType = keyof typeof SCHEMA;
type Variant<T extends MessageType> = { type: T } & Fields<(typeof SCHEMA)[T]>;
export type Message = { [T in MessageType]: Variant<T> }[MessageType];
export type SystemTime = Fields<typeof SYSTEM_TIME>;
export type InstanceInfo = Fields<typeof INSTANCE_INFO>;
export type RegisterInstance = Variant<"RegisterInstance">;
export type RegistrationResponse = Variant<"RegistrationResponse">;
export type StateUpdate = Variant<"StateUpdate">;
export type StateBroadcast = Variant<"StateBroadcast">;
export type InstanceDisconnected = Variant<"InstanceDisconnected">;
export type InstanceConnected = Variant<"InstanceConnected">;
export type Ping = Variant<"Ping">;
export type Pong = Variant<"Pong">;
export type ErrorMessage = Variant<"Error">;

const UPSTREAM = (Object.keys(SCHEMA) as MessageType[]).slice(0, 8);

// --- encoding: msgpackr -------------------------------------------------------

const ENCODE: { [K in Kind]: (v: KindTypes[K]) => unknown } = {
  // msgpackr writes lone surrogates in short strings as invalid UTF-8, which rmp-serde refuses.
  string: (v) => v.toWellFormed(),
  optString: (v) => v?.toWellFormed() ?? null,
  capabilities: (v) => v.map((s) => s.toWellFormed()),
  u64,
  u32: (v) => v,
  bool: (v) => v,
  uuid: (v) => v,
  optUuid: (v) => v ?? null,
  byteArray: (v) => new Splice(v),
  instances: (v) => v.map((info) => toWire(INSTANCE_INFO, info)),
  time: (v) => toWire(SYSTEM_TIME, v),
};

/** A struct in field order; a Splice value is written as the bytes it holds. */
function toWire(layout: Layout, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name in layout) {
    const v = value[name];
    const kind = layout[name]!;
    if (kind === "capabilities" && !(v as string[] | undefined)?.length) continue;
    out[name] = v instanceof Splice ? v : (ENCODE[kind] as (v: unknown) => unknown)(v);
  }
  return out;
}

const messageWire = (msg: Message) => ({ [msg.type]: toWire(SCHEMA[msg.type], msg) });

/** The body alone, as rmp-serde's `to_vec_named` would write it. */
export function encodeMessage(msg: Message): Uint8Array {
  return packBody(messageWire(msg));
}

/** `[u32 length][body]`, ready for the socket, in memory of its own. */
export function encodeFrame(msg: Message): Uint8Array {
  return packFrame(messageWire(msg));
}

/** A sender's name as encoded once at registration, for all its broadcasts. */
export function broadcastPrefix(sourceName: string): Uint8Array {
  return packBody(sourceName.toWellFormed());
}

/** A whole StateBroadcast frame: msgpackr writes it around the sender's name and the data, spliced. */
export function encodeBroadcastFrame(prefix: Uint8Array, timestamp: bigint, data: ByteArrayWire): Uint8Array {
  const fields = { source_instance_name: new Splice(prefix), timestamp, update_data: data };
  return packFrame({ StateBroadcast: toWire(SCHEMA.StateBroadcast, fields) });
}

/**
 * An InstanceInfo's bytes up to the value of `last_activity`: fixed for an
 * instance's whole life, so it is encoded once at registration. A relay with
 * thousands of instances then builds each RegistrationResponse by copying
 * bytes instead of encoding every other instance again.
 */
export function instanceInfoHead(info: Omit<InstanceInfo, "last_activity">): Uint8Array {
  return packBody(toWire(INSTANCE_INFO, { ...info, last_activity: new Splice(new Uint8Array(0)) }));
}

export interface KnownInstance {
  readonly infoHead: Uint8Array;
  /** Milliseconds since the epoch. */
  readonly lastActivity: number;
}

/** Encoded size of a SystemTime of whole milliseconds, at most. */
const SYSTEM_TIME_MAX = 1 + 17 + 9 + 18 + 5;

/** An upper bound of `known`'s encoded InstanceInfo, for sizing buffers once. */
export function instanceEntryBound(known: KnownInstance): number {
  return known.infoHead.length + SYSTEM_TIME_MAX;
}

/** Appends one InstanceInfo: the cached head, then last_activity. */
export function writeInstanceEntry(w: ByteWriter, known: KnownInstance): void {
  w.raw(known.infoHead);
  const ms = known.lastActivity;
  w.raw(packView(toWire(SYSTEM_TIME, { secs_since_epoch: Math.floor(ms / 1000), nanos_since_epoch: (ms % 1000) * 1_000_000 })));
}

/**
 * The start of a successful RegistrationResponse frame, up to and including the
 * header of `current_instances`; `count` encoded InstanceInfo entries of
 * `entriesLength` bytes complete it (the length prefix counts them). Sending the
 * entries as their own buffer lets every newcomer's queue share one copy of them.
 */
export function registrationResponseHead(message: string, assignedId: Uuid, count: number, entriesLength: number): Uint8Array {
  const fields = { success: true, message, assigned_id: assignedId, current_instances: new Splice(arrayHeader(count)) };
  const head = packFrame({ RegistrationResponse: toWire(SCHEMA.RegistrationResponse, fields) });
  new DataView(head.buffer).setUint32(0, head.length - 4 + entriesLength);
  return head;
}

/** A whole RegistrationResponse frame around already-encoded entries; same bytes as encodeFrame. */
export function encodeRegistrationFrameWithEntries(message: string, assignedId: Uuid, count: number, entries: Uint8Array): Uint8Array {
  const head = registrationResponseHead(message, assignedId, count, entries.length);
  const frame = new Uint8Array(head.length + entries.length);
  frame.set(head);
  frame.set(entries, head.length);
  return frame;
}

/** A `Vec<u8>` as rmp-serde writes it (msgpackr picks the same integer forms). */
export function toByteArrayWire(values: Uint8Array): ByteArrayWire {
  return packBody(Array.from(values)) as ByteArrayWire;
}

/** The values of a `Vec<u8>` held in its wire form. */
export function byteArrayValues(wire: ByteArrayWire): Uint8Array {
  return Uint8Array.from(unpackFirst(wire) as number[]);
}

// --- decoding: the StateUpdate fast path, else msgpackr and rmp-serde's checks -----

export interface DecodeOptions {
  /**
   * Accept variants outside upstream's enum (InstanceConnected). The relay
   * decodes without them, exactly as a Sova instance would; the client with.
   */
  extensions?: boolean;
}

/** The relay's hot path: a StateUpdate as every Sova instance writes it, with update_data a view of the body. */
export const decodeStateUpdate = fastReader<StateUpdate>("StateUpdate", SCHEMA.StateUpdate);

/** Decodes one frame body; throws RelayError("E_DECODE") in rmp-serde's words. */
export function decodeMessage(body: Uint8Array, options: DecodeOptions = {}): Message {
  return decodeStateUpdate(body) ?? decodeGeneral(body, options);
}

/** msgpackr reads the body; what rmp-serde 1.1.1 would refuse is refused, with its error text. */
export function decodeGeneral(body: Uint8Array, options: DecodeOptions = {}): Message {
  const top = unpackFirst(body);
  if (!(top instanceof Map)) {
    // serde reads a lone value as a unit variant; every variant has fields.
    variantOf(top, options.extensions === true);
    throw decodeError("invalid type: unit variant, expected struct variant");
  }
  if (top.size !== 1) throw decodeError(`array had incorrect length, expected ${top.size}`);
  const [key, value] = (top as Map<unknown, unknown>).entries().next().value!;
  const type = variantOf(key, options.extensions === true);
  return { type, ...readStruct(SCHEMA[type], value, `struct variant RelayMessage::${type}`, MAX_DEPTH) } as Message;
}

/** rmp-serde's nesting limit: each array, map and ext inside the message counts. */
const MAX_DEPTH = 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** How Rust prints the floats JS prints otherwise. */
const FLOAT_TEXT: Record<string, string> = { Infinity: "inf", "-Infinity": "-inf" };
const isFloat = (n: number) => !Number.isInteger(n) || Object.is(n, -0) || n >= 2 ** 32 || n < -(2 ** 31);
const isInt = (v: unknown): v is number | bigint => typeof v === "bigint" || (typeof v === "number" && !isFloat(v));

/** What serde's `Unexpected` calls a value, as in "invalid type: {this}, expected ...". */
function describe(v: unknown): string {
  if (v === RESERVED) throw decodeError("wrong msgpack marker Reserved");
  if (v === null) return "unit value";
  if (typeof v === "boolean") return `boolean \`${v}\``;
  if (typeof v === "number" && isFloat(v)) return `floating point \`${FLOAT_TEXT[String(v)] ?? (Object.is(v, -0) ? "-0" : v)}\``;
  if (isInt(v)) return `integer \`${v}\``;
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  if (v instanceof Uint8Array) return "byte array";
  if (Array.isArray(v)) return "sequence";
  return v === EXT ? "newtype struct" : "map";
}

const invalidType = (v: unknown, expected: string) => decodeError(`invalid type: ${describe(v)}, expected ${expected}`);

function nested(depth: number): number {
  if (depth <= 1) throw decodeError("depth limit exceeded");
  return depth - 1;
}

function variantOf(v: unknown, extensions: boolean): MessageType {
  let name: string;
  if (typeof v === "string") name = v;
  else if (v instanceof Uint8Array) name = new TextDecoder().decode(v);
  else if (isInt(v) && v >= 0) {
    const type = UPSTREAM[Number(v)];
    if (v >= UPSTREAM.length || type === undefined) throw decodeError(`invalid value: integer \`${v}\`, expected variant index 0 <= i < ${UPSTREAM.length}`);
    return type;
  } else throw invalidType(v, "variant identifier");
  if (Object.hasOwn(SCHEMA, name) && (extensions || UPSTREAM.includes(name as MessageType))) return name as MessageType;
  throw decodeError(`unknown variant \`${name}\`, expected one of ${UPSTREAM.map((t) => `\`${t}\``).join(", ")}`);
}

/** The field a key names (undefined: an unknown one, skipped); keys may be names, bin names or indexes. */
function fieldOf(layout: Layout, names: readonly string[], key: unknown): string | undefined {
  if (typeof key === "string") return Object.hasOwn(layout, key) ? key : undefined;
  if (key instanceof Uint8Array) {
    try {
      return fieldOf(layout, names, utf8.decode(key));
    } catch {
      return undefined;
    }
  }
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
    for (let i = 0; i < Math.min(v.length, names.length); i++) out[names[i]!] = read(layout[names[i]!]!, v[i], depth);
    if (v.length < names.length) throw decodeError(`invalid length ${v.length}, expected ${what} with ${names.length} elements`);
    if (v.length > names.length) throw decodeError(`array had incorrect length, expected ${names.length}`);
  } else throw invalidType(v, what);
  for (const name in layout) {
    if (Object.hasOwn(out, name)) continue;
    const kind = layout[name];
    if (kind === "optString" || kind === "optUuid") out[name] = null;
    else if (kind === "capabilities") out[name] = [];
    else throw decodeError(`missing field \`${name}\``);
  }
  return out;
}

/** What rmp-serde still checks in a value it ignores: its depth, and no 0xc1. */
function skip(v: unknown, depth: number): void {
  if (v === RESERVED) describe(v);
  if (Array.isArray(v) || v instanceof Map || v === EXT) {
    const inner = nested(depth);
    if (Array.isArray(v)) for (const e of v) skip(e, inner);
    else if (v instanceof Map) for (const [k, e] of v as Map<unknown, unknown>) skip(k, inner), skip(e, inner);
  }
}

function uint(v: unknown, max: number | bigint, expected: string): number | bigint {
  if (!isInt(v)) throw invalidType(v, expected);
  if (v < 0 || v > max) throw decodeError(`invalid value: integer \`${v}\`, expected ${expected}`);
  return v;
}

function string(v: unknown): string {
  if (typeof v === "string") return v;
  if (!(v instanceof Uint8Array)) throw invalidType(v, "a string");
  try {
    return utf8.decode(v);
  } catch {
    throw decodeError("invalid value: byte array, expected a string");
  }
}

function uuid(v: unknown): Uuid {
  if (!(v instanceof Uint8Array)) throw invalidType(v, "bytes");
  if (v.length !== 16) throw decodeError(`UUID parsing failed: invalid length: expected 16 bytes, found ${v.length}`);
  return v.slice();
}

function sequence<T>(v: unknown, depth: number, each: (e: unknown, depth: number) => T): T[] {
  if (!Array.isArray(v)) throw invalidType(v, "a sequence");
  const inner = nested(depth);
  return v.map((e) => each(e, inner));
}

function read(kind: Kind, v: unknown, depth: number): unknown {
  switch (kind) {
    case "string":
      return string(v);
    case "optString":
      return v === null ? null : string(v);
    case "capabilities":
      return sequence(v, depth, string);
    case "u64":
      return BigInt(uint(v, 2n ** 64n - 1n, "u64"));
    case "u32":
      return Number(uint(v, 0xffffffff, "u32"));
    case "bool":
      if (typeof v !== "boolean") throw invalidType(v, "a boolean");
      return v;
    case "uuid":
      return uuid(v);
    case "optUuid":
      return v === null ? null : uuid(v);
    case "byteArray":
      return toByteArrayWire(Uint8Array.from(sequence(v, depth, (e) => Number(uint(e, 255, "u8")))));
    case "instances":
      return sequence(v, depth, (e, d) => readStruct(INSTANCE_INFO, e, "struct InstanceInfo", d));
    case "time":
      return readStruct(SYSTEM_TIME, v, "struct SystemTime", depth);
  }
}

// --- helpers --------------------------------------------------------------------

export function uuidToString(id: Uuid): string {
  const hex = Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function uuidFromString(s: string): Uuid {
  const hex = s.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${s}`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

export function systemTimeFromMillis(ms: number): SystemTime {
  return { secs_since_epoch: BigInt(Math.floor(ms / 1000)), nanos_since_epoch: (ms % 1000) * 1_000_000 };
}

/** The variant a body claims to be, read without decoding the rest; null if it names none. */
export function peekVariant(body: Uint8Array): string | null {
  // Only the key is read: behind a one-entry map header (fixmap, map16, map32).
  const at = body[0] === 0x81 ? 1 : body[0] === 0xde && body[1] === 0 && body[2] === 1 ? 3 : -1;
  try {
    const key = at > 0 ? unpackFirst(body.subarray(at)) : null;
    return typeof key === "string" ? key : null;
  } catch {
    return null;
  }
}
