/**
 * `/metrics` through prom-client: the relay's counters (generated from the one
 * table in src/core/stats.ts), a few gauges, the latency histogram, and the
 * standard process metrics (`collectDefaultMetrics`). The hot path keeps plain
 * numbers; they are copied into prom-client's metrics when a scrape collects.
 *
 * prom-client is loaded when the HTTP listener starts, not with the relay:
 * loading it costs 4.4 MB of RSS (compiled binary, 43.9 -> 48.3 MB idle),
 * which a relay run with `--http-port 0` need not pay.
 */
import type { Metric, Registry } from "prom-client";
import type { Relay } from "../core/index.ts";
import { COUNTERS, COUNTER_KEYS, type CounterSpec, type Histogram } from "../core/stats.ts";
import type { WebSocketStats } from "../transport/websocket.ts";
import type { DescriptorStats } from "../transport/descriptors.ts";
import { type Status, type StatusContext, snapshot } from "./status.ts";
import type { WatchStats } from "../watch/index.ts";
import type { SpectatorStats } from "./watch.ts";

/** prom-client's Registry.PROMETHEUS_CONTENT_TYPE, without loading it. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type PromClient = typeof import("prom-client");

/**
 * Default metrics left out, as measured under Bun 1.4.5: no active
 * handles/requests/resources are ever reported and no GC entries observed;
 * the heap spaces are zeros but for "old", and reading them costs 2.3 ms of
 * CPU per scrape (v8.getHeapSpaceStatistics), ten times the rest together;
 * process_heap_bytes is VmData, over 6 GB of reserved address space under Bun
 * (nodejs_heap_size_used_bytes has the JavaScript heap); and the version of
 * Node that Bun stands in for would mislead.
 */
const UNFIT_UNDER_BUN = [
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_gc_duration_seconds",
  "nodejs_heap_space_size_total_bytes",
  "nodejs_heap_space_size_used_bytes",
  "nodejs_heap_space_size_available_bytes",
  "nodejs_version_info",
  "process_heap_bytes",
];

let _process: Registry | null = null;

/** One per process, whatever the number of relays in it (tests start many). */
function processRegistry(pc: PromClient): Registry {
  if (_process) return _process;
  _process = new pc.Registry();
  pc.collectDefaultMetrics({ register: _process });
  for (const name of UNFIT_UNDER_BUN) _process.removeSingleMetric(name);
  return _process;
}

/** prom-client has no way to set a histogram's buckets, so the relay's own histogram is exposed as a custom metric. */
function histogramMetric(name: string, help: string, read: () => Histogram): Metric {
  const get = () => {
    const h = read();
    const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
    let cumulative = 0;
    h.bounds.forEach((bound, i) => {
      cumulative += h.counts[i]!;
      values.push({ metricName: `${name}_bucket`, labels: { le: bound }, value: cumulative });
    });
    cumulative += h.counts[h.bounds.length]!;
    values.push({ metricName: `${name}_bucket`, labels: { le: "+Inf" }, value: cumulative });
    values.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
    values.push({ metricName: `${name}_count`, labels: {}, value: h.count });
    return { name, help, type: "histogram", values, aggregator: "sum" };
  };
  return { name, help, type: "histogram", labelNames: [], get } as unknown as Metric;
}

export interface MetricsEndpoint {
  /** The exposition text: the relay's metrics, then the process's. */
  render(): Promise<string>;
  /** Every family served, as registered (docs/reference/metrics.md is generated from this). */
  families(): MetricFamily[];
}

export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  labels: readonly string[];
  /** prom-client's standard process metrics rather than the relay's own. */
  standard: boolean;
}

/** What the HTTP side counts of `/events` streams. */
export interface EventStreamStats {
  subscribers: number;
  /** Refused past the subscriber cap. */
  refused: number;
  /** Cut for not reading. */
  cut: number;
  /** Ended at the per-stream byte budget (the browser reconnects). */
  rotated: number;
  /** A visitor's stream ended to give the operator's page a slot. */
  yielded: number;
  /** Found closed when an event was queued (the page had gone unnoticed): that event was not sent. */
  gone: number;
}

type ByTransport = Record<"tcp" | "websocket", number>;

/** Connections and bytes by transport, from the WebSocket endpoint when there is one. */
export interface TransportTotals {
  open: ByTransport;
  opened: ByTransport;
  bytesIn: ByTransport;
  bytesOut: ByTransport;
  websocketRefused: Record<string, number>;
}

/** What /metrics shows by transport: TCP is what the relay counts less what came over WebSocket. */
export function transportTotals(relay: Relay, ws: WebSocketStats): TransportTotals {
  const s = relay.stats;
  return {
    open: { tcp: relay.connections.size - ws.open, websocket: ws.open },
    opened: { tcp: s.connectionsOpened - ws.opened, websocket: ws.opened },
    bytesIn: { tcp: s.bytesIn - ws.bytesIn, websocket: ws.bytesIn },
    bytesOut: { tcp: s.bytesOut - ws.bytesOut, websocket: ws.bytesOut },
    websocketRefused: ws.refused,
  };
}

export interface MetricsSources {
  events?: () => EventStreamStats;
  /** HTTP requests refused, by reason (host: a name not allowed, hosts.ts). */
  refused?: () => { host: number };
  transports?: () => TransportTotals;
  /** Spectators and the watcher's queue (src/http/watch.ts, src/watch/watcher.ts). */
  watch?: () => { spectators: SpectatorStats; watcher: WatchStats };
}

export async function createMetrics(ctx: StatusContext, sources: MetricsSources = {}): Promise<MetricsEndpoint> {
  const { events, transports, refused, watch } = sources;
  const pc = await import("prom-client");
  // Now rather than at the first scrape: the CPU counters count from when they are made.
  const processMetrics = processRegistry(pc);
  const registry = new pc.Registry();
  const registers = [registry];
  // Taken once per scrape, before prom-client calls each metric's collect().
  let status: Status = snapshot(ctx);
  const current = () => status;

  relayMetrics(pc, registers, current);
  counterMetrics(pc, registers, current);
  if (events) eventMetrics(pc, registers, events);
  if (refused) {
    new pc.Counter({
      name: "sova_relay_http_refused_total",
      help: "HTTP requests refused, by reason (host: a name not allowed by --allow-host, DNS rebinding).",
      labelNames: ["reason"],
      registers,
      collect() {
        this.reset();
        this.inc({ reason: "host" }, refused().host);
      },
    });
  }
  if (transports) transportMetrics(pc, registers, transports);
  storageMetrics(pc, registers, current);
  if (ctx.descriptors) descriptorMetrics(pc, registers, ctx.descriptors);
  if (watch) watchMetrics(pc, registers, watch);
  if (status.cluster) clusterMetrics(pc, registers, () => status.cluster!);
  registry.registerMetric(
    histogramMetric(
      "sova_relay_relay_latency_seconds",
      "Time from a StateUpdate's arrival to its last delivery being queued.",
      () => ctx.relay.stats.relayLatency,
    ),
  );

  return {
    async render() {
      status = snapshot(ctx);
      return `${await registry.metrics()}\n${await processMetrics.metrics()}`;
    },
    families() {
      const of = (r: Registry, standard: boolean) =>
        r.getMetricsAsArray().map((m) => {
          const f = m as unknown as { name: string; type: string; help: string; labelNames?: readonly string[] };
          return { name: f.name, type: f.type, help: f.help, labels: f.labelNames ?? [], standard };
        });
      return [...of(registry, false), ...of(processMetrics, true)];
    },
  };
}

/** A gauge set from `read` at each scrape. */
function _gauge(pc: PromClient, registers: Registry[], name: string, help: string, read: () => number): void {
  new pc.Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** A counter set to `read`'s total at each scrape. */
function _total(pc: PromClient, registers: Registry[], name: string, help: string, read: () => number): void {
  new pc.Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** The relay's version, state, connections and sessions, from the scrape's status. */
function relayMetrics(pc: PromClient, registers: Registry[], status: () => Status): void {
  const gauge = (name: string, help: string, read: (s: Status) => number) =>
    _gauge(pc, registers, name, help, () => read(status()));
  const perSession = (name: string, help: string, read: (s: Status["sessions"][number]) => number) =>
    new pc.Gauge({
      name,
      help,
      labelNames: ["session"],
      registers,
      collect() {
        this.reset();
        for (const s of status().sessions) if (read(s) > 0) this.set({ session: s.id }, read(s));
      },
    });

  new pc.Gauge({
    name: "sova_relay_build_info",
    help: "The relay's version.",
    labelNames: ["version"],
    registers,
    collect() {
      this.reset();
      this.set({ version: status().version }, 1);
    },
  });
  gauge("sova_relay_up", "1 while the relay accepts connections, 0 once shutdown has begun.", (s) =>
    s.status === "ok" ? 1 : 0,
  );
  gauge("sova_relay_uptime_seconds", "Seconds since the relay started.", (s) => s.uptime);
  gauge("sova_relay_connections_open", "Open connections, TCP and WebSocket, registered or not.", (s) => s.connections);
  gauge(
    "sova_relay_parked_instances",
    "Members kept in their session for their grace window after losing their connection (docs/resume.md).",
    (s) => s.parked,
  );
  gauge(
    "sova_relay_resume_buffer_bytes",
    "Bytes of updates held in sessions' resumption logs for members that may resume.",
    (s) => s.resume_buffer_bytes,
  );
  perSession("sova_relay_instances", "Registered instances per session (by its short hash).", (s) => s.instances);
  perSession(
    "sova_relay_history_entries",
    "Updates kept in a session's history (by its short hash).",
    (s) => s.history_entries,
  );
  perSession("sova_relay_history_bytes", "Bytes kept in a session's history.", (s) => s.history_bytes);
}

/** Every counter of the table in src/core/stats.ts. */
function counterMetrics(pc: PromClient, registers: Registry[], status: () => Status): void {
  for (const key of COUNTER_KEYS) {
    const spec: CounterSpec = COUNTERS[key];
    const label = spec.label;
    new pc.Counter({
      name: spec.metric,
      help: spec.help,
      labelNames: label ? [label] : [],
      registers,
      collect() {
        this.reset();
        const value = status().totals[spec.status as keyof Status["totals"]] as number | Record<string, number>;
        if (typeof value === "number") this.inc(value);
        else if (label) for (const [k, v] of Object.entries(value)) this.inc({ [label]: k }, v);
      },
    });
  }
}

/** The `/events` streams. */
function eventMetrics(pc: PromClient, registers: Registry[], events: () => EventStreamStats): void {
  _gauge(pc, registers, "sova_relay_events_subscribers", "Open /events streams.", () => events().subscribers);
  new pc.Counter({
    name: "sova_relay_events_closed_total",
    help: "/events subscribers turned away or ended by the relay, by reason (gone: a stream found closed, the event for it unsent).",
    labelNames: ["reason"],
    registers,
    collect() {
      this.reset();
      const e = events();
      this.inc({ reason: "subscriber_cap" }, e.refused);
      this.inc({ reason: "not_reading" }, e.cut);
      this.inc({ reason: "stream_bytes" }, e.rotated);
      this.inc({ reason: "operator" }, e.yielded);
      this.inc({ reason: "gone" }, e.gone);
    },
  });
}

/** Connections and bytes by transport, and the WebSocket refusals. */
function transportMetrics(pc: PromClient, registers: Registry[], transports: () => TransportTotals): void {
  const { Counter, Gauge } = pc;
  const byTransport = (
    kind: typeof Gauge | typeof Counter,
    name: string,
    help: string,
    read: (t: TransportTotals) => ByTransport,
  ) =>
    new kind({
      name,
      help,
      labelNames: ["transport"],
      registers,
      collect() {
        this.reset();
        const t = read(transports());
        for (const transport of ["tcp", "websocket"] as const) {
          if (this instanceof Gauge) this.set({ transport }, t[transport]);
          else (this as InstanceType<typeof Counter>).inc({ transport }, t[transport]);
        }
      },
    });
  byTransport(
    Gauge,
    "sova_relay_transport_connections_open",
    "Open connections, registered or not, by transport.",
    (t) => t.open,
  );
  byTransport(
    Counter,
    "sova_relay_transport_connections_total",
    "Connections accepted, by transport.",
    (t) => t.opened,
  );
  byTransport(
    Counter,
    "sova_relay_transport_received_bytes_total",
    "Frame bytes read from instances, by transport.",
    (t) => t.bytesIn,
  );
  byTransport(
    Counter,
    "sova_relay_transport_sent_bytes_total",
    "Frame bytes written to instances, by transport.",
    (t) => t.bytesOut,
  );
  new Counter({
    name: "sova_relay_websocket_refusals_total",
    help: "WebSocket upgrades refused and WebSocket connections closed for what they sent, by reason.",
    labelNames: ["reason"],
    registers,
    collect() {
      this.reset();
      for (const [reason, value] of Object.entries(transports().websocketRefused)) this.inc({ reason }, value);
    },
  });
}

/** This node in its cluster (present with --cluster). */
function clusterMetrics(pc: PromClient, registers: Registry[], c: () => NonNullable<Status["cluster"]>): void {
  const gauge = (name: string, help: string, read: () => number) => _gauge(pc, registers, name, help, read);
  const total = (name: string, help: string, read: () => number) => _total(pc, registers, name, help, read);
  gauge(
    "sova_relay_cluster_connected",
    "1 while this node reaches NATS, 0 while it relays among its own instances only.",
    () => (c().connected ? 1 : 0),
  );
  gauge("sova_relay_cluster_nodes", "Other nodes heard within the down timeout.", () => c().nodes.length);
  gauge(
    "sova_relay_cluster_history_pending_bytes",
    "Bytes of history held for registrations waiting for their name claim (at most 2 x --history-bytes a session).",
    () => c().history_pending_bytes,
  );
  gauge("sova_relay_cluster_remote_instances", "Instances connected to other nodes, in sessions this node knows.", () =>
    c().nodes.reduce((n, x) => n + x.members, 0),
  );
  total("sova_relay_cluster_published_total", "StateBroadcast frames sent to the cluster.", () => c().published);
  total("sova_relay_cluster_received_total", "StateBroadcast frames received from other nodes.", () => c().received);
  total(
    "sova_relay_cluster_unsent_total",
    "Frames not sent to the cluster while NATS was unreachable.",
    () => c().unsent,
  );
  total(
    "sova_relay_cluster_nodes_down_total",
    "Nodes declared down after the heartbeat timeout.",
    () => c().nodes_down,
  );
  total(
    "sova_relay_cluster_name_conflicts_total",
    "Names found claimed by another node when claiming them again after an outage.",
    () => c().name_conflicts,
  );
  total("sova_relay_cluster_disconnects_total", "Times NATS became unreachable.", () => c().disconnects);
  gauge(
    "sova_relay_cluster_secret_refused",
    "1 when this node's session secret differs from the cluster's and it stays out of the cluster.",
    () => (c().session_secret === "refused" ? 1 : 0),
  );
  total(
    "sova_relay_cluster_nodes_refused_total",
    "Node starts heard with another session secret, kept out of this node's sessions.",
    () => c().nodes_refused,
  );
  new pc.Counter({
    name: "sova_relay_cluster_gaps_total",
    help: "Frames from another node that never arrived, by sending node.",
    labelNames: ["node"],
    registers,
    collect() {
      this.reset();
      for (const [node, n] of Object.entries(c().gaps)) this.inc({ node }, n);
    },
  });
}

/** Whether history reaches the disk (present with --state-dir). */
function storageMetrics(pc: PromClient, registers: Registry[], status: () => Status): void {
  if (!status().storage) return;
  new pc.Gauge({
    name: "sova_relay_storage_degraded",
    help: "1 while history cannot be written to --state-dir (relaying goes on, history stays in memory), else 0.",
    registers,
    collect() {
      this.set(status().storage?.state === "degraded" ? 1 : 0);
    },
  });
  new pc.Counter({
    name: "sova_relay_storage_write_failures_total",
    help: "History writes (and rewrites after a failure) to --state-dir that failed.",
    registers,
    collect() {
      this.reset();
      this.inc(status().storage?.write_failures ?? 0);
    },
  });
}

/** File descriptors, and the seconds in which none was left to accept a connection with (Linux). */
function descriptorMetrics(pc: PromClient, registers: Registry[], read: () => DescriptorStats): void {
  const gauge = (name: string, help: string, value: (d: DescriptorStats) => number | null) =>
    new pc.Gauge({
      name,
      help,
      registers,
      collect() {
        const v = value(read());
        if (v !== null) this.set(v);
      },
    });
  gauge("sova_relay_descriptors_open", "File descriptors the process holds.", (d) => d.open);
  gauge("sova_relay_descriptors_limit", "The process's file descriptor limit (RLIMIT_NOFILE).", (d) => d.limit);
  gauge(
    "sova_relay_accept_waiting",
    "Connections waiting in the listeners' accept queues when descriptors last ran out.",
    (d) => d.waiting,
  );
  new pc.Counter({
    name: "sova_relay_accept_failing_seconds_total",
    help: "Seconds in which no file descriptor was left, so no connection (TCP, WebSocket, HTTP) could be accepted.",
    registers,
    collect() {
      this.reset();
      this.inc(read().acceptFailingSeconds);
    },
  });
}

/** Spectators and the decoding of watched sessions. */
function watchMetrics(
  pc: PromClient,
  registers: Registry[],
  read: () => { spectators: SpectatorStats; watcher: WatchStats },
): void {
  const gauge = (name: string, help: string, value: () => number) =>
    new pc.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  const counter = (name: string, help: string, label: string, values: () => Record<string, number>) =>
    new pc.Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(values())) this.inc({ [label]: k }, v);
      },
    });
  gauge("sova_relay_spectators", "Open spectator streams (/watch/KEY/events).", () => read().spectators.spectators);
  gauge("sova_relay_watched_sessions", "Sessions a spectator key opens.", () => read().watcher.sessions);
  gauge(
    "sova_relay_watch_queue_frames",
    "Frames of watched sessions waiting to be decoded.",
    () => read().watcher.queued,
  );
  counter(
    "sova_relay_spectators_closed_total",
    "Spectators turned away or ended by the relay, by reason (gone: a stream found closed, the frame for it unsent).",
    "reason",
    () => {
      const s = read().spectators;
      return {
        relay_cap: s.refused.relay,
        address_cap: s.refused.address,
        session_cap: s.refused.session,
        not_reading: s.cut,
        stream_bytes: s.rotated,
        gone: s.gone,
      };
    },
  );
  counter(
    "sova_relay_watch_key_failures_total",
    "/watch/ requests answered as unknown paths, by reason.",
    "reason",
    () => ({
      wrong_key: read().spectators.wrongKeys,
      cooling_down: read().spectators.keyLimited,
    }),
  );
  counter("sova_relay_watch_updates_total", "Updates of watched sessions, by what became of them.", "outcome", () => {
    const w = read().watcher;
    return { decoded: w.decoded, unreadable: w.unreadable, dropped: w.dropped, malformed: w.malformed };
  });
  counter(
    "sova_relay_watch_capped_total",
    "Times a watched session's model passed its limits (feed only).",
    "kind",
    () => ({
      model: read().watcher.capped,
    }),
  );
}
