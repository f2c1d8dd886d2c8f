/**
 * The relay's messages and their rmp-serde encoding (PROTOCOL.md, "Messages").
 * Field names stay as they are on the wire so the code reads like the contract.
 *
 * One table describes every variant; the decoder and the encoder both walk it,
 * and the encoder writes fields in the table's order, which is the Rust struct
 * order that rmp-serde's `to_vec_named` uses.
 */
import { MsgpackReader, MsgpackWriter, decodeError, encodeByteArray, encodeUtf8, writeUint } from "./msgpack.ts";

/** 16 bytes; sent as `bin 16`, never as a string. */
export type Uuid = Uint8Array;

/**
 * `update_data` as rmp-serde encodes a `Vec<u8>` (an array of fixint / 0xcc XX),
 * kept encoded so the relay copies it into broadcasts without a decode/encode.
 */
export type ByteArrayWire = Uint8Array & { readonly __byteArrayWire: true };

export interface SystemTime {
  secs_since_epoch: bigint;
  nanos_since_epoch: number;
}

export interface InstanceInfo {
  id: Uuid;
  name: string;
  version: string;
  connected_at: SystemTime;
  last_activity: SystemTime;
}

export interface RegisterInstance {
  type: "RegisterInstance";
  instance_name: string;
  version: string;
  session_token: string | null;
  /** Extension: absent for today's Sova instances. */
  capabilities: string[];
}
export interface RegistrationResponse {
  type: "RegistrationResponse";
  success: boolean;
  message: string;
  assigned_id: Uuid | null;
  current_instances: InstanceInfo[];
}
export interface StateUpdate {
  type: "StateUpdate";
  source_instance_id: Uuid;
  timestamp: bigint;
  update_data: ByteArrayWire;
}
export interface StateBroadcast {
  type: "StateBroadcast";
  source_instance_name: string;
  timestamp: bigint;
  update_data: ByteArrayWire;
}
export interface InstanceDisconnected {
  type: "InstanceDisconnected";
  instance_id: Uuid;
  instance_name: string;
}
/** Extension: only for instances that asked for "presence". */
export interface InstanceConnected {
  type: "InstanceConnected";
  instance_id: Uuid;
  instance_name: string;
}
export interface Ping {
  type: "Ping";
  timestamp: bigint;
}
export interface Pong {
  type: "Pong";
  timestamp: bigint;
}
export interface ErrorMessage {
  type: "Error";
  message: string;
}

export type Message =
  | RegisterInstance
  | RegistrationResponse
  | StateUpdate
  | StateBroadcast
  | InstanceDisconnected
  | InstanceConnected
  | Ping
  | Pong
  | ErrorMessage;

export type MessageType = Message["type"];

type FieldKind =
  | "string"
  | "optString"
  | "strings"
  | "u64"
  | "bool"
  | "uuid"
  | "optUuid"
  | "byteArray"
  | "instances";

interface FieldSpec {
  readonly name: string;
  readonly key: Uint8Array;
  readonly kind: FieldKind;
  /** Value when the field is missing; required fields have none. */
  readonly absent?: () => unknown;
  /** Extension fields are written only when they carry something. */
  readonly extension?: boolean;
}

function field(name: string, kind: FieldKind, extra: Partial<FieldSpec> = {}): FieldSpec {
  const absent = kind === "optString" || kind === "optUuid" ? () => null : undefined;
  return { name, key: encodeUtf8(name), kind, absent, ...extra };
}

/** Upstream's enum, in declaration order (serde also accepts a variant's index). */
const UPSTREAM_VARIANTS = [
  "RegisterInstance",
  "RegistrationResponse",
  "StateUpdate",
  "StateBroadcast",
  "InstanceDisconnected",
  "Ping",
  "Pong",
  "Error",
] as const;

const SCHEMA: Record<MessageType, readonly FieldSpec[]> = {
  RegisterInstance: [
    field("instance_name", "string"),
    field("version", "string"),
    field("session_token", "optString"),
    field("capabilities", "strings", { absent: () => [], extension: true }),
  ],
  RegistrationResponse: [
    field("success", "bool"),
    field("message", "string"),
    field("assigned_id", "optUuid"),
    field("current_instances", "instances"),
  ],
  StateUpdate: [field("source_instance_id", "uuid"), field("timestamp", "u64"), field("update_data", "byteArray")],
  StateBroadcast: [field("source_instance_name", "string"), field("timestamp", "u64"), field("update_data", "byteArray")],
  InstanceDisconnected: [field("instance_id", "uuid"), field("instance_name", "string")],
  InstanceConnected: [field("instance_id", "uuid"), field("instance_name", "string")],
  Ping: [field("timestamp", "u64")],
  Pong: [field("timestamp", "u64")],
  Error: [field("message", "string")],
};

const INSTANCE_INFO: readonly FieldSpec[] = [
  field("id", "uuid"),
  field("name", "string"),
  field("version", "string"),
  field("connected_at", "u64"), // replaced below: SystemTime is its own struct
  field("last_activity", "u64"),
];

const VARIANT_KEYS = new Map<string, MessageType>(Object.keys(SCHEMA).map((k) => [k, k as MessageType]));

export interface DecodeOptions {
  /**
   * Accept variants outside upstream's enum (InstanceConnected). The relay
   * decodes without them, exactly as a Sova instance would; the client with.
   */
  extensions?: boolean;
  /**
   * Fields left unread (given their absent value): the benchmark's thousands of
   * instances do not need each RegistrationResponse's list of all the others.
   * A skipped field that comes last is not even walked.
   */
  skip?: ReadonlySet<string>;
}

/** Decodes one frame body; throws RelayError("E_DECODE") in rmp-serde's words. */
export function decodeMessage(body: Uint8Array, options: DecodeOptions = {}): Message {
  const r = new MsgpackReader(body);
  if (!r.isMap()) throw r.invalidType("variant identifier");
  const entries = r.readMapLength("variant identifier");
  if (entries !== 1) throw decodeError(`invalid length ${entries}, expected map with a single key`);
  const type = readVariant(r, options.extensions === true);
  const msg = readStruct(r, SCHEMA[type], `struct variant Message::${type}`, options.skip) as unknown as Message;
  msg.type = type;
  return msg;
}

function readVariant(r: MsgpackReader, extensions: boolean): MessageType {
  if (!r.isString()) {
    const index = r.readUint(0xffffffff, "variant identifier");
    const name = UPSTREAM_VARIANTS[index];
    if (name === undefined) {
      throw decodeError(`invalid value: integer \`${index}\`, expected variant index 0 <= i < ${UPSTREAM_VARIANTS.length}`);
    }
    return name;
  }
  const name = r.readString("variant identifier");
  const type = VARIANT_KEYS.get(name);
  if (type === undefined || (!extensions && !(UPSTREAM_VARIANTS as readonly string[]).includes(type))) {
    throw decodeError(`unknown variant \`${name}\`, expected one of ${UPSTREAM_VARIANTS.map((v) => `\`${v}\``).join(", ")}`);
  }
  return type;
}

function readStruct(r: MsgpackReader, fields: readonly FieldSpec[], what: string, skip?: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (r.isArray()) {
    // rmp-serde's compact `to_vec` writes structs as arrays, and its reader takes them.
    const n = r.readArrayLength(what);
    const required = fields.filter((f) => f.absent === undefined).length;
    if (n < required) throw decodeError(`invalid length ${n}, expected ${what} with ${fields.length} elements`);
    for (let i = 0; i < n; i++) {
      const f = fields[i];
      if (f === undefined) r.skip();
      else out[f.name] = readField(r, f);
    }
  } else {
    const n = r.readMapLength(what);
    for (let i = 0; i < n; i++) {
      const f = matchField(r, fields);
      if (f === undefined) {
        r.skip();
        continue;
      }
      if (f.name in out) throw decodeError(`duplicate field \`${f.name}\``);
      if (skip?.has(f.name)) {
        out[f.name] = [];
        if (i === n - 1) break;
        r.skip();
        continue;
      }
      out[f.name] = readField(r, f);
    }
  }
  for (const f of fields) {
    if (f.name in out) continue;
    if (f.absent === undefined) throw decodeError(`missing field \`${f.name}\``);
    out[f.name] = f.absent();
  }
  return out;
}

/** Reads a key and finds its field by comparing bytes, so no string is built. */
function matchField(r: MsgpackReader, fields: readonly FieldSpec[]): FieldSpec | undefined {
  if (!r.isString()) {
    const index = r.readUint(0xffffffff, "field identifier");
    return fields[index];
  }
  const key = r.readStringBytes("field identifier");
  outer: for (const f of fields) {
    if (f.key.length !== key.length) continue;
    for (let i = 0; i < key.length; i++) if (f.key[i] !== key[i]) continue outer;
    return f;
  }
  return undefined;
}

function readField(r: MsgpackReader, f: FieldSpec): unknown {
  switch (f.kind) {
    case "string":
      return r.readString();
    case "optString":
      return r.tryNil() ? null : r.readString();
    case "strings": {
      const n = r.readArrayLength("a sequence");
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push(r.readString());
      return out;
    }
    case "u64":
      return r.readU64();
    case "bool":
      return r.readBool();
    case "uuid":
      return readUuid(r);
    case "optUuid":
      return r.tryNil() ? null : readUuid(r);
    case "byteArray":
      return readByteArray(r);
    case "instances": {
      const n = r.readArrayLength("a sequence");
      const out: InstanceInfo[] = [];
      for (let i = 0; i < n; i++) out.push(readInstanceInfo(r));
      return out;
    }
  }
}

function readUuid(r: MsgpackReader): Uuid {
  const bytes = r.readBin("bytes");
  if (bytes.length !== 16) throw decodeError(`invalid length ${bytes.length}, expected 16 bytes`);
  return bytes.slice();
}

function readInstanceInfo(r: MsgpackReader): InstanceInfo {
  const fields = INSTANCE_INFO;
  const out: Record<string, unknown> = {};
  const n = r.readMapLength("struct InstanceInfo");
  for (let i = 0; i < n; i++) {
    const f = matchField(r, fields);
    if (f === undefined) r.skip();
    else if (f.name === "connected_at" || f.name === "last_activity") out[f.name] = readSystemTime(r);
    else out[f.name] = readField(r, f);
  }
  for (const f of fields) if (!(f.name in out)) throw decodeError(`missing field \`${f.name}\``);
  return out as unknown as InstanceInfo;
}

const SYSTEM_TIME: readonly FieldSpec[] = [field("secs_since_epoch", "u64"), field("nanos_since_epoch", "u64")];

function readSystemTime(r: MsgpackReader): SystemTime {
  const n = r.readMapLength("struct SystemTime");
  let secs: bigint | undefined;
  let nanos: number | undefined;
  for (let i = 0; i < n; i++) {
    const f = matchField(r, SYSTEM_TIME);
    if (f === undefined) r.skip();
    else if (f.name === "secs_since_epoch") secs = r.readU64();
    else nanos = r.readUint(999_999_999, "u32");
  }
  if (secs === undefined) throw decodeError("missing field `secs_since_epoch`");
  if (nanos === undefined) throw decodeError("missing field `nanos_since_epoch`");
  return { secs_since_epoch: secs, nanos_since_epoch: nanos };
}

/**
 * Validates a `Vec<u8>` and returns rmp-serde's encoding of it. When the sender
 * already used that encoding (every Sova instance does), this is a view of the
 * input: no copy, no per-byte decode. Other encodings take the slow path.
 */
export function readByteArray(r: MsgpackReader): ByteArrayWire {
  const start = r.pos;
  const n = r.readArrayLength("a sequence");
  const bytes = r.bytes;
  let canonical = r.pos - start === (n < 16 ? 1 : n < 0x10000 ? 3 : 5);
  let p = r.pos;
  for (let i = 0; i < n; i++) {
    const m = p < bytes.length ? bytes[p]! : -1;
    if (m >= 0 && m < 0x80) {
      p++;
    } else if (m === 0xcc && p + 1 < bytes.length) {
      if (bytes[p + 1]! < 0x80) canonical = false;
      p += 2;
    } else {
      canonical = false;
      r.pos = p;
      r.readUint(255, "u8");
      p = r.pos;
    }
  }
  r.pos = p;
  if (canonical) return bytes.subarray(start, p) as ByteArrayWire;
  r.pos = start;
  const values = new Uint8Array(r.readArrayLength("a sequence"));
  for (let i = 0; i < values.length; i++) values[i] = r.readUint(255, "u8");
  return encodeByteArray(values) as ByteArrayWire;
}

/** The values of a `Vec<u8>` held in its wire form. */
export function byteArrayValues(wire: ByteArrayWire): Uint8Array {
  const r = new MsgpackReader(wire);
  const out = new Uint8Array(r.readArrayLength("a sequence"));
  for (let i = 0; i < out.length; i++) out[i] = r.readUint(255, "u8");
  return out;
}

export function toByteArrayWire(values: Uint8Array): ByteArrayWire {
  return encodeByteArray(values) as ByteArrayWire;
}

function writeStruct(w: MsgpackWriter, fields: readonly FieldSpec[], value: Record<string, unknown>): void {
  const present = fields.filter((f) => !f.extension || (value[f.name] as unknown[] | undefined)?.length);
  w.mapHeader(present.length);
  for (const f of present) {
    w.strBytes(f.key);
    writeField(w, f.kind, value[f.name]);
  }
}

function writeField(w: MsgpackWriter, kind: FieldKind, v: unknown): void {
  switch (kind) {
    case "string":
      w.str(v as string);
      return;
    case "optString":
      if (v == null) w.nil();
      else w.str(v as string);
      return;
    case "strings": {
      const list = v as string[];
      w.arrayHeader(list.length);
      for (const s of list) w.str(s);
      return;
    }
    case "u64":
      w.uint(v as bigint);
      return;
    case "bool":
      w.bool(v as boolean);
      return;
    case "uuid":
      w.bin(v as Uuid);
      return;
    case "optUuid":
      if (v == null) w.nil();
      else w.bin(v as Uuid);
      return;
    case "byteArray":
      w.raw(v as ByteArrayWire);
      return;
    case "instances": {
      const list = v as InstanceInfo[];
      w.arrayHeader(list.length);
      for (const info of list) writeInstanceInfo(w, info);
      return;
    }
  }
}

function writeInstanceInfo(w: MsgpackWriter, info: InstanceInfo): void {
  writeInstanceInfoHead(w, info);
  writeSystemTime(w, info.last_activity.secs_since_epoch, info.last_activity.nanos_since_epoch);
}

/** Everything of an InstanceInfo up to the value of `last_activity`, its last field. */
function writeInstanceInfoHead(w: MsgpackWriter, info: Omit<InstanceInfo, "last_activity">): void {
  w.mapHeader(5);
  w.str("id").bin(info.id);
  w.str("name").str(info.name);
  w.str("version").str(info.version);
  w.str("connected_at");
  writeSystemTime(w, info.connected_at.secs_since_epoch, info.connected_at.nanos_since_epoch);
  w.str("last_activity");
}

function writeSystemTime(w: MsgpackWriter, secs: number | bigint, nanos: number): void {
  w.mapHeader(2).str("secs_since_epoch").uint(secs).str("nanos_since_epoch").uint(nanos);
}

function writeMessage(w: MsgpackWriter, msg: Message): MsgpackWriter {
  w.mapHeader(1).str(msg.type);
  writeStruct(w, SCHEMA[msg.type], msg as unknown as Record<string, unknown>);
  return w;
}

/** The body alone, as rmp-serde's `to_vec_named` would write it. */
export function encodeMessage(msg: Message): Uint8Array {
  return writeMessage(new MsgpackWriter(), msg).body();
}

/** `[u32 length][body]`, ready for the socket. */
export function encodeFrame(msg: Message): Uint8Array {
  return writeMessage(new MsgpackWriter(), msg).frame();
}

const UPDATE_DATA_KEY = new MsgpackWriter(16, 0).str("update_data").body();

/**
 * Everything of a StateBroadcast frame body that depends only on its sender,
 * built once at registration so the hot path only appends timestamp and data.
 */
export function broadcastPrefix(sourceName: string): Uint8Array {
  return new MsgpackWriter(64, 0).mapHeader(1).str("StateBroadcast").mapHeader(3).str("source_instance_name").str(sourceName).str("timestamp").body();
}

/** A whole StateBroadcast frame in one exact-size allocation; same bytes as encodeFrame. */
export function encodeBroadcastFrame(prefix: Uint8Array, timestamp: bigint, data: ByteArrayWire): Uint8Array {
  const tsSize = timestamp < 0x80n ? 1 : timestamp < 0x100n ? 2 : timestamp < 0x10000n ? 3 : timestamp <= 0xffffffffn ? 5 : 9;
  const bodySize = prefix.length + tsSize + UPDATE_DATA_KEY.length + data.length;
  const out = new Uint8Array(4 + bodySize);
  const view = new DataView(out.buffer);
  view.setUint32(0, bodySize);
  out.set(prefix, 4);
  let pos = writeUint(out, view, 4 + prefix.length, timestamp);
  out.set(UPDATE_DATA_KEY, pos);
  pos += UPDATE_DATA_KEY.length;
  out.set(data, pos);
  return out;
}

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
  try {
    const r = new MsgpackReader(body);
    if (!r.isMap() || r.readMapLength("") !== 1 || !r.isString()) return null;
    return r.readString();
  } catch {
    return null;
  }
}

/**
 * An InstanceInfo's bytes up to the value of `last_activity`: fixed for an
 * instance's whole life, so it is encoded once at registration. A relay with
 * thousands of instances then builds each RegistrationResponse by copying
 * bytes instead of encoding every other instance again.
 */
export function instanceInfoHead(info: Omit<InstanceInfo, "last_activity">): Uint8Array {
  const w = new MsgpackWriter(128, 0);
  writeInstanceInfoHead(w, info);
  return w.body();
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
export function writeInstanceEntry(w: MsgpackWriter, known: KnownInstance): void {
  w.raw(known.infoHead);
  // From milliseconds directly: no SystemTime object or BigInt per listed instance.
  writeSystemTime(w, Math.floor(known.lastActivity / 1000), (known.lastActivity % 1000) * 1_000_000);
}

/**
 * The start of a successful RegistrationResponse frame, up to and including the
 * header of `current_instances`; `count` encoded InstanceInfo entries of
 * `entriesLength` bytes complete it (the length prefix counts them). Sending the
 * entries as their own buffer lets every newcomer's queue share one copy of them.
 */
export function registrationResponseHead(message: string, assignedId: Uuid, count: number, entriesLength: number): Uint8Array {
  const w = new MsgpackWriter(128 + message.length * 3);
  w.mapHeader(1).str("RegistrationResponse").mapHeader(4);
  w.str("success").bool(true).str("message").str(message).str("assigned_id").bin(assignedId).str("current_instances");
  w.arrayHeader(count);
  const head = w.frame();
  new DataView(head.buffer, head.byteOffset, 4).setUint32(0, head.length - 4 + entriesLength);
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

/** A successful RegistrationResponse frame listing `others`; same bytes as encodeFrame would give. */
export function encodeRegistrationFrame(message: string, assignedId: Uuid, others: readonly KnownInstance[]): Uint8Array {
  let size = 0;
  for (let i = 0; i < others.length; i++) size += instanceEntryBound(others[i]!);
  const w = new MsgpackWriter(size, 0);
  for (let i = 0; i < others.length; i++) writeInstanceEntry(w, others[i]!);
  return encodeRegistrationFrameWithEntries(message, assignedId, others.length, w.written());
}
