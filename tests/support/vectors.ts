/** Reads the copied rmp-serde vectors and turns their JSON form into messages. */
import { parse as parseUuid } from "uuid";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { registrationResponseHead, toByteArrayWire } from "../../src/protocol/messages.ts";
import type { InstanceInfo, Message, MessageType, SystemTime, Uuid } from "../../src/protocol/messages.ts";
import { FIXTURES } from "./paths.ts";

export interface Vector {
  name: string;
  hex: string;
  canonical_hex?: string;
  message: Record<string, Record<string, unknown>>;
  note?: string;
  rmp_serde_error?: string;
  /** edge_cases: "accepted" or "rejected". */
  rmp_serde?: string;
}

export interface Vectors {
  relay_to_instance: Vector[];
  instance_to_relay: Vector[];
  accepted_other_encodings: Vector[];
  rejected_by_rmp_serde: Vector[];
  /** Unusual bodies no Sova instance sends, with what rmp-serde 1.1.1 does with each. */
  edge_cases: Vector[];
}

/** A whole RegistrationResponse frame as the relay sends it: the head, then the roster's entries. */
export function encodeRegistrationFrameWithEntries(
  message: string,
  assignedId: Uuid,
  count: number,
  entries: Uint8Array,
): Uint8Array {
  return Buffer.concat([registrationResponseHead(message, assignedId, count, entries.length), entries]);
}

export function loadVectors(): Vectors {
  return JSON.parse(readFileSync(join(FIXTURES, "vectors.json"), "utf8"));
}

export function vector(list: Vector[], name: string): Vector {
  const v = list.find((x) => x.name === name);
  if (!v) throw new Error(`no vector named ${name}`);
  return v;
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));

function systemTime(v: { secs_since_epoch: string; nanos_since_epoch: number }): SystemTime {
  return { secs_since_epoch: BigInt(v.secs_since_epoch), nanos_since_epoch: v.nanos_since_epoch };
}

/** The vectors write u64 as decimal strings, UUIDs as text and byte arrays as hex. */
export function messageFromVector(message: Vector["message"]): Message {
  // biome-ignore lint/suspicious/noExplicitAny: JSON from the vector file; each field is checked against the codec
  const [type, f] = Object.entries(message)[0]! as [MessageType, Record<string, any>];
  switch (type) {
    case "RegisterInstance":
      return {
        type,
        instance_name: f.instance_name,
        version: f.version,
        session_token: f.session_token ?? null,
        capabilities: f.capabilities ?? [],
      };
    case "RegistrationResponse":
      return {
        type,
        success: f.success,
        message: f.message,
        assigned_id: f.assigned_id ? parseUuid(f.assigned_id) : null,
        // biome-ignore lint/suspicious/noExplicitAny: as above
        current_instances: (f.current_instances as any[]).map(
          (i): InstanceInfo => ({
            id: parseUuid(i.id),
            name: i.name,
            version: i.version,
            connected_at: systemTime(i.connected_at),
            last_activity: systemTime(i.last_activity),
          }),
        ),
      };
    case "StateUpdate":
      return {
        type,
        source_instance_id: parseUuid(f.source_instance_id),
        timestamp: BigInt(f.timestamp),
        update_data: toByteArrayWire(unhex(f.update_data_hex)),
      };
    case "StateBroadcast":
      return {
        type,
        source_instance_name: f.source_instance_name,
        timestamp: BigInt(f.timestamp),
        update_data: toByteArrayWire(unhex(f.update_data_hex)),
      };
    case "InstanceDisconnected":
    case "InstanceConnected":
      return { type, instance_id: parseUuid(f.instance_id), instance_name: f.instance_name };
    case "Ping":
    case "Pong":
      return { type, timestamp: BigInt(f.timestamp) };
    case "Error":
      return { type, message: f.message };
    default:
      // The resumption extensions have no vectors: rmp-serde's Sova never sends or reads them.
      throw new Error(`no vector form for ${type}`);
  }
}
