/**
 * The wire layout, stated once (docs/protocol.md, "Messages" and "Encoding"): every variant's fields
 * in Rust declaration order, which is the order rmp-serde's `to_vec_named` writes
 * and msgpackr keeps. The types, the encoder, the validator and the StateUpdate
 * fast path all derive from this table.
 */

/** 16 bytes; sent as `bin 16`, never as a string. */
export type Uuid = Uint8Array;

/**
 * `update_data` as rmp-serde encodes a `Vec<u8>` (an array of fixint / 0xcc XX),
 * kept encoded so the relay copies it into broadcasts without a decode/encode.
 */
export type ByteArrayWire = Uint8Array & { readonly __byteArrayWire: true };

export interface KindTypes {
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
  /** Extension (resumption): `bin` of any length. */
  bytes: Uint8Array;
  /** Extension (resumption): a position in a session's streams, `[[origin, number], ...]`. */
  cursor: CursorEntry[];
  /** Extension (resumption): a session's members, `[[id, name], ...]`. */
  members: MemberEntry[];
}

export type MemberEntry = [id: Uuid, name: string];

/** One stream of a session (a relay's own, or a cluster node's) and the last number passed on from it. */
export type CursorEntry = [origin: string, q: bigint];
export type Kind = keyof KindTypes;
export type Layout = Readonly<Record<string, Kind>>;
type Fields<L extends Layout> = { -readonly [K in keyof L]: KindTypes[L[K]] };

export const SYSTEM_TIME = { secs_since_epoch: "u64", nanos_since_epoch: "u32" } as const;
export const INSTANCE_INFO = {
  id: "uuid",
  name: "string",
  version: "string",
  connected_at: "time",
  last_activity: "time",
} as const;

/** Upstream's enum `RelayMessage`, variants in declaration order (serde also reads an index), then ours. */
export const SCHEMA = {
  RegisterInstance: {
    instance_name: "string",
    version: "string",
    session_token: "optString",
    capabilities: "capabilities",
  },
  RegistrationResponse: { success: "bool", message: "string", assigned_id: "optUuid", current_instances: "instances" },
  StateUpdate: { source_instance_id: "uuid", timestamp: "u64", update_data: "byteArray" },
  StateBroadcast: { source_instance_name: "string", timestamp: "u64", update_data: "byteArray" },
  InstanceDisconnected: { instance_id: "uuid", instance_name: "string" },
  Ping: { timestamp: "u64" },
  Pong: { timestamp: "u64" },
  Error: { message: "string" },
  /** Extension: only for instances that asked for "presence". */
  InstanceConnected: { instance_id: "uuid", instance_name: "string" },
  /**
   * Extensions for resumption (docs/protocol.md, "Resumption"): only between a tunnel that asked for "resume" and the relay; the
   * tunnel never passes one on to Sova. Tunnel to relay: ResumeInstance (instead of RegisterInstance), Ack, Leave.
   */
  ResumeInstance: {
    instance_name: "string",
    version: "string",
    session_token: "optString",
    capabilities: "capabilities",
    instance_id: "uuid",
    secret: "bytes",
    cursor: "cursor",
    own: "cursor",
    acked: "u64",
    generation: "u64",
  },
  /** Relay to tunnel: after a RegistrationResponse (and history) or a resumption, before any live frame. */
  Resumable: {
    secret: "bytes",
    cursor: "cursor",
    window_ms: "u64",
    generation: "u64",
    consumed: "u64",
    members: "members",
  },
  /** Relay to tunnel: the next StateBroadcast is number `q` of stream `origin`, entry `n` of this relay's log. */
  Mark: { origin: "string", q: "u64", n: "u64" },
  /** Relay to tunnel: one StateUpdate of this instance consumed; relayed as `q` of `origin` (q 0: dropped). */
  Acked: { origin: "string", q: "u64" },
  /** Tunnel to relay: every entry up to `n` (of Mark) was passed on to Sova. */
  Ack: { n: "u64" },
  /** Tunnel to relay: the player left; end the instance now, no grace window. */
  Leave: { reason: "string" },
} as const;
export const UPSTREAM_VARIANTS = Object.keys(SCHEMA).slice(0, 8) as MessageType[];

export type MessageType = keyof typeof SCHEMA;
export type Variant<T extends MessageType> = { type: T } & Fields<(typeof SCHEMA)[T]>;
export type Message = { [T in MessageType]: Variant<T> }[MessageType];
export type SystemTime = Fields<typeof SYSTEM_TIME>;
export type InstanceInfo = Fields<typeof INSTANCE_INFO>;
export type RegisterInstance = Variant<"RegisterInstance">;
export type RegistrationResponse = Variant<"RegistrationResponse">;
export type StateUpdate = Variant<"StateUpdate">;
export type ResumeInstance = Variant<"ResumeInstance">;
