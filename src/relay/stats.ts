/**
 * Counters of everything the relay does, kept as plain numbers on the hot path
 * and read by the status page and the metrics endpoint.
 */
export type DisconnectReason =
  | "closed" // the peer closed the connection
  | "error" // reset or socket error
  | "handshake_timeout"
  | "idle_timeout"
  | "slow_consumer"
  | "rejected" // registration refused
  | "protocol" // something other than RegisterInstance came first
  | "shutdown";

export type DropReason = "rate_limit" | "slow_consumer" | "invalid" | "oversized" | "shutdown";

export interface RelayStats {
  connectionsOpened: number;
  /** Empty frames before registration: health checks. */
  probes: number;
  registrationsAccepted: number;
  registrationsRejected: Record<string, number>;
  messagesReceived: Record<string, number>;
  broadcasts: number;
  deliveries: number;
  drops: Record<DropReason, number>;
  disconnects: Record<DisconnectReason, number>;
}

export function createStats(): RelayStats {
  return {
    connectionsOpened: 0,
    probes: 0,
    registrationsAccepted: 0,
    registrationsRejected: {},
    messagesReceived: {},
    broadcasts: 0,
    deliveries: 0,
    drops: { rate_limit: 0, slow_consumer: 0, invalid: 0, oversized: 0, shutdown: 0 },
    disconnects: {
      closed: 0,
      error: 0,
      handshake_timeout: 0,
      idle_timeout: 0,
      slow_consumer: 0,
      rejected: 0,
      protocol: 0,
      shutdown: 0,
    },
  };
}

export function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}
