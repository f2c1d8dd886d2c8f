/**
 * Counters of everything the relay does, kept as plain numbers on the hot path
 * and read by the status page and the metrics endpoint.
 */
export type DisconnectReason =
  | "closed" // the peer closed the connection
  | "error" // reset or socket error
  | "handshake_timeout"
  | "handshake_limit" // too many connections still handshaking, relay-wide or from one address
  | "idle_timeout"
  | "slow_consumer"
  | "replay_timeout" // a newcomer did not take its registration response and history in time
  | "memory_pressure" // cut to bring the relay's unsent data back under its bound
  | "rejected" // registration refused
  | "protocol" // something other than RegisterInstance came first
  | "shutdown";

export type DropReason = "rate_limit" | "slow_consumer" | "invalid" | "oversized" | "shutdown";

export interface RelayStats {
  connectionsOpened: number;
  /** Closed at accept by --allow/--deny, the per-address cap or a cool-down. */
  connectionsRefused: number;
  /** Empty frames before registration: health checks. */
  probes: number;
  /** `Error "Connection lost"` frames queued as a registered connection's last word. */
  lastWords: number;
  /** Pongs sent to instances that were sent nothing for the nudge interval. */
  nudges: number;
  registrationsAccepted: number;
  registrationsRejected: Record<string, number>;
  messagesReceived: Record<string, number>;
  broadcasts: number;
  deliveries: number;
  drops: Record<DropReason, number>;
  disconnects: Record<DisconnectReason, number>;
  /** Bytes read from and written to sockets (the server counts them). */
  bytesIn: number;
  bytesOut: number;
  /** Seconds from a StateUpdate's arrival to its last delivery being queued. */
  relayLatency: Histogram;
}

/** Upper bounds in seconds: 10 µs to 100 ms, where a relay that is working well lives. */
export const LATENCY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1] as const;

export interface Histogram {
  readonly bounds: readonly number[];
  /** Non-cumulative counts per bucket; the last is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

export function createHistogram(bounds: readonly number[]): Histogram {
  return { bounds, counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

export function observe(h: Histogram, value: number): void {
  let i = 0;
  while (i < h.bounds.length && value > h.bounds[i]!) i++;
  h.counts[i]!++;
  h.sum += value;
  h.count++;
}

export function createStats(): RelayStats {
  return {
    connectionsOpened: 0,
    connectionsRefused: 0,
    probes: 0,
    lastWords: 0,
    nudges: 0,
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
      handshake_limit: 0,
      idle_timeout: 0,
      slow_consumer: 0,
      replay_timeout: 0,
      memory_pressure: 0,
      rejected: 0,
      protocol: 0,
      shutdown: 0,
    },
    bytesIn: 0,
    bytesOut: 0,
    relayLatency: createHistogram(LATENCY_BUCKETS),
  };
}

export function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}
