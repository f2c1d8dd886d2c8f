/**
 * The relay's messages on the wire: encoded by msgpackr from the layout in
 * schema.ts, decoded by the StateUpdate fast path or by msgpackr and rmp-serde's
 * checks (validate.ts), and the pieces the relay caches (a sender's name, an
 * instance's InstanceInfo) so that a hop or a crowd's registrations stay cheap.
 */
import { decodeStateUpdate, mapHeaderEnd } from "./fast-update.ts";
import { Splice, arrayHeader, packBody, packFrame, packView, u64, unpackFirst } from "./msgpack.ts";
import { INSTANCE_INFO, SCHEMA, SYSTEM_TIME } from "./schema.ts";
import type { ByteArrayWire, InstanceInfo, Kind, KindTypes, Layout, Message } from "./schema.ts";
import type { SystemTime, Uuid } from "./schema.ts";
import { decodeGeneral, type DecodeOptions } from "./validate.ts";

export type * from "./schema.ts";
export { decodeGeneral, type DecodeOptions } from "./validate.ts";
export { byteArrayValues, toByteArrayWire } from "./msgpack.ts";

/** What msgpackr is given for each kind; the rest (numbers, booleans, UUIDs, nulls) as they are. */
const ENCODE: { [K in Kind]?: (v: KindTypes[K]) => unknown } = {
  // msgpackr writes lone surrogates in short strings as invalid UTF-8, which rmp-serde refuses.
  string: (v) => v.toWellFormed(),
  optString: (v) => v?.toWellFormed() ?? null,
  capabilities: (v) => v.map((s) => s.toWellFormed()),
  u64,
  byteArray: (v) => new Splice(v),
  instances: (v) => v.map((info) => toWire(INSTANCE_INFO, info)),
  time: (v) => toWire(SYSTEM_TIME, v),
  cursor: (v) => v.map(([origin, q]) => [origin.toWellFormed(), u64(q)]),
  members: (v) => v.map(([id, name]) => [id, name.toWellFormed()]),
};

/** A struct in field order; a Splice value is written as the bytes it holds. */
function toWire(layout: Layout, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name in layout) {
    const v = value[name];
    const kind = layout[name]!;
    if (kind === "capabilities" && !(v as string[] | undefined)?.length) continue;
    const encode = ENCODE[kind] as ((v: unknown) => unknown) | undefined;
    out[name] = v instanceof Splice || encode === undefined ? v : encode(v);
  }
  return out;
}

const messageWire = (msg: Message) => ({ [msg.type]: toWire(SCHEMA[msg.type], msg) });
/** The body alone, as rmp-serde's `to_vec_named` would write it. */
export const encodeMessage = (msg: Message): Uint8Array => packBody(messageWire(msg));
/** `[u32 length][body]`, ready for the socket, in memory of its own. */
export const encodeFrame = (msg: Message): Uint8Array => packFrame(messageWire(msg));
/** A sender's name as encoded once at registration, for all its broadcasts. */
export const broadcastPrefix = (sourceName: string): Uint8Array => packBody(sourceName.toWellFormed());

/** What every StateBroadcast frame this codec writes starts with, up to the sender's name. */
const BROADCAST_HEAD = Uint8Array.of(
  0x81, // {StateBroadcast: {source_instance_name, timestamp, update_data}}
  ...packBody("StateBroadcast"),
  0x83,
  ...packBody("source_instance_name"),
);

/** Whether `frame` is a StateBroadcast whose sender's name is the one `prefix` (broadcastPrefix) encodes. */
export function broadcastFrom(frame: Uint8Array, prefix: Uint8Array): boolean {
  const at = 4 + BROADCAST_HEAD.length;
  if (frame.length < at + prefix.length) return false;
  for (let i = 0; i < BROADCAST_HEAD.length; i++) if (frame[4 + i] !== BROADCAST_HEAD[i]) return false;
  for (let i = 0; i < prefix.length; i++) if (frame[at + i] !== prefix[i]) return false;
  return true;
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

/**
 * The encoded InstanceInfo of each of `known`, back to back: each cached head, then
 * last_activity. One msgpackr call for the whole list, written as an array whose
 * header is then cut: a call per entry took twice as long for a crowd's 5000.
 */
export function instanceEntries(known: readonly KnownInstance[]): Uint8Array {
  const list: unknown[] = [];
  for (const { infoHead, lastActivity: ms } of known) {
    const time = { secs_since_epoch: Math.floor(ms / 1000), nanos_since_epoch: (ms % 1000) * 1_000_000 };
    list.push(new Splice(infoHead), toWire(SYSTEM_TIME, time));
  }
  return new Uint8Array(packView(list).subarray(arrayHeader(list.length).length));
}

/**
 * The start of a successful RegistrationResponse frame, up to and including the
 * header of `current_instances`; `count` encoded InstanceInfo entries of
 * `entriesLength` bytes complete it (the length prefix counts them). Sending the
 * entries as their own buffer lets every newcomer's queue share one copy of them.
 */
export function registrationResponseHead(message: string, assignedId: Uuid, count: number, entriesLength: number) {
  const fields = { success: true, message, assigned_id: assignedId, current_instances: new Splice(arrayHeader(count)) };
  const head = packFrame({ RegistrationResponse: toWire(SCHEMA.RegistrationResponse, fields) });
  new DataView(head.buffer).setUint32(0, head.length - 4 + entriesLength);
  return head;
}

export { decodeStateUpdate } from "./fast-update.ts";

/**
 * Decodes one frame body; throws RelayError("E_DECODE") in rmp-serde's words. `extensions`: accept
 * variants outside upstream's enum (InstanceConnected), as the client does; the relay, like Sova, not.
 */
export function decodeMessage(body: Uint8Array, options: DecodeOptions = {}): Message {
  return decodeStateUpdate(body) ?? decodeGeneral(body, options);
}

export const systemTimeFromMillis = (ms: number): SystemTime => ({
  secs_since_epoch: BigInt(Math.floor(ms / 1000)),
  nanos_since_epoch: (ms % 1000) * 1_000_000,
});

/** The variant a body claims to be, read without decoding the rest; null if it names none. */
export function peekVariant(body: Uint8Array): string | null {
  const at = mapHeaderEnd(body, 0, 1); // msgpackr reads only the key behind it
  // A short ASCII name (every variant's, as rmp-serde and msgpackr write it), read here: the tunnel looks at the
  // variant of every frame both ways, and msgpackr's call costs several times this.
  const len = at > 0 && body[at]! >= 0xa0 && body[at]! <= 0xbf ? body[at]! & 0x1f : -1;
  if (len > 0 && at + 1 + len <= body.length) {
    let name = "";
    for (let i = at + 1; i <= at + len; i++) {
      const c = body[i]!;
      if (c >= 0x80) break;
      name += String.fromCharCode(c);
    }
    if (name.length === len) return name;
  }
  try {
    const key = at > 0 ? unpackFirst(body.subarray(at)) : null;
    return typeof key === "string" ? key : null;
  } catch {
    return null;
  }
}
