/**
 * Counters of everything the relay does, kept as plain numbers on the hot path
 * and read by `/status`, `/metrics` and the status page.
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
  | "shutdown"
  | "resume_expired"; // a parked member's grace window ran out (docs/resume.md)

/**
 * Every counter, once: its field on the hot path, its name in `/status`
 * (`status`), its Prometheus family (`metric`, `help`) and, for counters kept
 * per reason or type, the label and the keys known in advance. /status,
 * /metrics and the page are all generated from this table.
 */
export interface CounterSpec {
  readonly status: string;
  readonly metric: string;
  readonly help: string;
  readonly label?: string;
  readonly keys?: readonly string[];
}

const DROP_REASONS = ["rate_limit", "slow_consumer", "invalid", "oversized", "shutdown"] as const;
export type DropReason = (typeof DROP_REASONS)[number];

const DISCONNECT_REASONS = [
  "closed",
  "error",
  "handshake_timeout",
  "handshake_limit",
  "idle_timeout",
  "slow_consumer",
  "replay_timeout",
  "memory_pressure",
  "rejected",
  "protocol",
  "shutdown",
  "resume_expired",
] as const satisfies readonly DisconnectReason[];

/** Why a tunnel's resumption was refused (it then tells Sova "Connection lost"). */
const RESUME_REFUSALS = [
  "off",
  "secret",
  "gap",
  "name_taken",
  "gone",
  "capacity",
  "version",
  "token",
  "invalid",
  "cooldown",
  "rate",
] as const;
export type ResumeRefusal = (typeof RESUME_REFUSALS)[number];

export const COUNTERS = {
  connectionsOpened: {
    status: "connections_opened",
    metric: "sova_relay_connections_total",
    help: "Connections accepted, TCP and WebSocket.",
  },
  connectionsRefused: {
    status: "connections_refused",
    metric: "sova_relay_connections_refused_total",
    help: "Connections closed at accept (--allow/--deny, per-address cap, cool-down).",
  },
  probes: {
    status: "probes",
    metric: "sova_relay_probes_total",
    help: "Empty frames before registration (health checks).",
  },
  lastWords: {
    status: "last_words",
    metric: "sova_relay_last_words_total",
    help: 'Error "Connection lost" frames queued as a registered connection\'s last frame.',
  },
  noticesSuppressed: {
    status: "notices_suppressed",
    metric: "sova_relay_notices_suppressed_total",
    help:
      "InstanceConnected/InstanceDisconnected not sent during a register/leave storm in a session" +
      " (to members that never learned of the instance).",
  },
  nudges: {
    status: "nudges",
    metric: "sova_relay_nudges_total",
    help: "Pongs sent to instances that were sent nothing for the nudge interval (or whose frame header came alone).",
  },
  registrationsAccepted: {
    status: "registrations_accepted",
    metric: "sova_relay_registrations_accepted_total",
    help: "Registrations accepted.",
  },
  registrationsRejected: {
    status: "registrations_rejected",
    metric: "sova_relay_registrations_rejected_total",
    help: "Registrations rejected, by reason.",
    label: "reason",
  },
  messagesReceived: {
    status: "messages_received",
    metric: "sova_relay_messages_received_total",
    help: "Messages received, by type.",
    label: "type",
  },
  broadcasts: { status: "broadcasts", metric: "sova_relay_broadcasts_total", help: "StateUpdates relayed." },
  deliveries: {
    status: "deliveries",
    metric: "sova_relay_deliveries_total",
    help: "StateBroadcast frames queued to recipients.",
  },
  bytesIn: { status: "bytes_in", metric: "sova_relay_received_bytes_total", help: "Bytes read from instances." },
  bytesOut: { status: "bytes_out", metric: "sova_relay_sent_bytes_total", help: "Bytes written to instances." },
  drops: {
    status: "drops",
    metric: "sova_relay_drops_total",
    help: "Messages dropped, by reason.",
    label: "reason",
    keys: DROP_REASONS,
  },
  disconnects: {
    status: "disconnects",
    metric: "sova_relay_disconnects_total",
    help: "Connections ended, by reason.",
    label: "reason",
    keys: DISCONNECT_REASONS,
  },
  parked: {
    status: "parked",
    metric: "sova_relay_parked_total",
    help: "Members that may resume (tunnels) kept in their session after losing their connection or their node.",
  },
  resumptions: {
    status: "resumptions",
    metric: "sova_relay_resumptions_total",
    help: "Members restored by their tunnel, the gap replayed.",
  },
  resumeReplayed: {
    status: "resume_replayed",
    metric: "sova_relay_resume_replayed_total",
    help: "StateBroadcasts replayed to restored members (what was broadcast during their gap).",
  },
  resumeRefused: {
    status: "resume_refused",
    metric: "sova_relay_resume_refused_total",
    help: "Resumptions refused, by reason (the tunnel then tells Sova the connection is lost).",
    label: "reason",
    keys: RESUME_REFUSALS,
  },
  resumeTakeovers: {
    status: "resume_takeovers",
    metric: "sova_relay_resume_takeovers_total",
    help: "Resumptions that replaced a stale (half-open) connection of the same member.",
  },
  resumeLogEvicted: {
    status: "resume_log_evicted",
    metric: "sova_relay_resume_log_evicted_total",
    help: "Frames dropped from a session's resumption log by its byte bound before every tunnel had them.",
  },
} as const satisfies Record<string, CounterSpec>;

type Counters = typeof COUNTERS;
/** A counter's value: a number, or counts by label value (keyed by its known keys when it has them). */
type CounterValue<S> = S extends { keys: readonly (infer K extends string)[] }
  ? Record<K, number>
  : S extends { label: string }
    ? Record<string, number>
    : number;

export type RelayStats = { -readonly [K in keyof Counters]: CounterValue<Counters[K]> } & {
  /** Seconds from a StateUpdate's arrival to its last delivery being queued. */
  relayLatency: Histogram;
};

/** The counters as `/status` names them. */
export type CounterTotals = { -readonly [K in keyof Counters as Counters[K]["status"]]: CounterValue<Counters[K]> };

export const COUNTER_KEYS = Object.keys(COUNTERS) as Array<keyof Counters>;

/** Upper bounds in seconds: 10 µs to 100 ms, where a relay that is working well lives. */
export const LATENCY_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
] as const;

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
  const stats: Record<string, unknown> = { relayLatency: createHistogram(LATENCY_BUCKETS) };
  for (const key of COUNTER_KEYS) {
    const spec: CounterSpec = COUNTERS[key];
    stats[key] = spec.label === undefined ? 0 : Object.fromEntries((spec.keys ?? []).map((k) => [k, 0]));
  }
  return stats as RelayStats;
}

/** A copy of the counters under their `/status` names. */
export function counterTotals(stats: RelayStats): CounterTotals {
  const totals: Record<string, unknown> = {};
  for (const key of COUNTER_KEYS) {
    const value = stats[key];
    totals[COUNTERS[key].status] = typeof value === "number" ? value : { ...value };
  }
  return totals as CounterTotals;
}

export function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}
