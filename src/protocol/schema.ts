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
}
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
