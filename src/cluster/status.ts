/** What a node says about itself on /status and /metrics (src/http/), and the counters behind it. */
import type { SecretState } from "./secret.ts";

export interface ClusterNodeStatus {
  name: string;
  members: number;
  last_heard_ms: number;
}

export interface ClusterStatus {
  node: string;
  connected: boolean;
  /** Name claims go through JetStream KV (false: unique per node only). */
  names_shared: boolean;
  /**
   * Whether this node's session secret is the cluster's (secret.ts): "agreed", "given" (--cluster-secret, no
   * JetStream to check it against), "unchecked" (NATS not reached yet), "own" (no tokens, started before NATS on a
   * secret of its own) or "refused" (it differs: not joined).
   */
  session_secret: SecretState;
  nodes: ClusterNodeStatus[];
  published: number;
  received: number;
  /** Frames from other nodes that never arrived, by sending node. */
  gaps: Record<string, number>;
  /** Frames not sent to the cluster while NATS was unreachable. */
  unsent: number;
  /** Messages on the frame subjects that were not a relay's envelope: ignored. */
  foreign: number;
  nodes_down: number;
  /** Nodes heard with another session secret: kept out of this node's sessions. */
  nodes_refused: number;
  name_conflicts: number;
  disconnects: number;
}

/** Counted by the parts of a node (frames, membership, connection), read by its status. */
export interface ClusterCounters {
  published: number;
  received: number;
  unsent: number;
  foreign: number;
  nodesDown: number;
  nodesRefused: number;
  disconnects: number;
}

export function createCounters(): ClusterCounters {
  return { published: 0, received: 0, unsent: 0, foreign: 0, nodesDown: 0, nodesRefused: 0, disconnects: 0 };
}
