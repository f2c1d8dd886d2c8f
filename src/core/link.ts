/**
 * The seam between the relay core and a cluster of relays. The core stays free
 * of sockets and of NATS: it calls out through a `ClusterLink` (its own members
 * joining and leaving, its broadcast frames, name claims) and is called in
 * through `RemoteMembers` (other nodes' members and frames). Without a link
 * nothing here runs and registration stays synchronous.
 */
import type { Instance } from "./index.ts";
import type { NameKey } from "./names.ts";

/** "ok": the name is this node's across the cluster (or the cluster is unreachable and it is unique here). */
export type ClaimResult = "ok" | "taken";

/** What the relay tells the cluster. */
export interface ClusterLink {
  /** Reserve the name keyed `key` in `session` across the cluster; "taken" when another node holds it. Never rejects. */
  claim(session: string, key: NameKey): Promise<ClaimResult>;
  /** Give back a claim whose registration did not complete. */
  release(session: string, key: NameKey): void;
  joined(inst: Instance): void;
  /** `inst` left: its claim, made under `key`, is given back. */
  left(inst: Instance, key: NameKey): void;
  /** A StateBroadcast frame of a local instance, exactly as the local members got it. */
  broadcast(inst: Instance, frame: Uint8Array): void;
}

/** A member of a session whose connection is on another node. */
export interface RemoteMember {
  readonly node: string;
  readonly session: string;
  /** UUID text, as the owning node assigned it. */
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly connectedAt: number;
  lastActivity: number;
}

/** What the cluster tells the relay; the relay implements it. */
export interface RemoteMembers {
  /** Shown in `current_instances`, announced with InstanceConnected, never sent to. */
  joined(member: RemoteMember): void;
  /** Gone (left, or its node was declared down): InstanceDisconnected to the local members. */
  left(session: string, id: string): void;
  activity(session: string, id: string, at: number): void;
  /** A StateBroadcast frame from another node: delivered unchanged to this node's members of `session`. */
  frame(session: string, frame: Uint8Array): void;
  /** This node's registered instances, for heartbeats and re-announcing. */
  locals(): Instance[];
}
