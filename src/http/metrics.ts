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
import { type Status, type StatusContext, snapshot } from "./status.ts";

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
  transports?: () => TransportTotals;
}

export async function createMetrics(ctx: StatusContext, sources: MetricsSources = {}): Promise<MetricsEndpoint> {
  const { events, transports } = sources;
  const pc = await import("prom-client");
  const { Counter, Gauge } = pc;
  // Now rather than at the first scrape: the CPU counters count from when they are made.
  const processMetrics = processRegistry(pc);
  const registry = new pc.Registry();
  const registers = [registry];
  // Taken once per scrape, before prom-client calls each metric's collect().
  let status: Status = snapshot(ctx);

  const gauge = (name: string, help: string, read: (s: Status) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(status));
      },
    });
  const perSession = (name: string, help: string, read: (s: Status["sessions"][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["session"],
      registers,
      collect() {
        this.reset();
        for (const s of status.sessions) if (read(s) > 0) this.set({ session: s.id }, read(s));
      },
    });

  new Gauge({
    name: "sova_relay_build_info",
    help: "The relay's version.",
    labelNames: ["version"],
    registers,
    collect() {
      this.reset();
      this.set({ version: status.version }, 1);
    },
  });
  gauge("sova_relay_up", "1 while the relay accepts connections, 0 once shutdown has begun.", (s) =>
    s.status === "ok" ? 1 : 0,
  );
  gauge("sova_relay_uptime_seconds", "Seconds since the relay started.", (s) => s.uptime);
  gauge("sova_relay_connections_open", "Open connections, TCP and WebSocket, registered or not.", (s) => s.connections);
  perSession("sova_relay_instances", "Registered instances per session (by its short hash).", (s) => s.instances);
  perSession(
    "sova_relay_history_entries",
    "Updates kept in a session's history (by its short hash).",
    (s) => s.history_entries,
  );
  perSession("sova_relay_history_bytes", "Bytes kept in a session's history.", (s) => s.history_bytes);

  for (const key of COUNTER_KEYS) {
    const spec: CounterSpec = COUNTERS[key];
    const label = spec.label;
    new Counter({
      name: spec.metric,
      help: spec.help,
      labelNames: label ? [label] : [],
      registers,
      collect() {
        this.reset();
        const value = status.totals[spec.status as keyof Status["totals"]] as number | Record<string, number>;
        if (typeof value === "number") this.inc(value);
        else if (label) for (const [k, v] of Object.entries(value)) this.inc({ [label]: k }, v);
      },
    });
  }
  if (events) {
    new Gauge({
      name: "sova_relay_events_subscribers",
      help: "Open /events streams.",
      registers,
      collect() {
        this.set(events().subscribers);
      },
    });
    new Counter({
      name: "sova_relay_events_closed_total",
      help: "/events subscribers turned away or ended by the relay, by reason.",
      labelNames: ["reason"],
      registers,
      collect() {
        this.reset();
        const e = events();
        this.inc({ reason: "subscriber_cap" }, e.refused);
        this.inc({ reason: "not_reading" }, e.cut);
        this.inc({ reason: "stream_bytes" }, e.rotated);
      },
    });
  }
  if (transports) {
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
  if (status.cluster) {
    const c = () => status.cluster!;
    gauge(
      "sova_relay_cluster_connected",
      "1 while this node reaches NATS, 0 while it relays among its own instances only.",
      () => (c().connected ? 1 : 0),
    );
    gauge("sova_relay_cluster_nodes", "Other nodes heard within the down timeout.", () => c().nodes.length);
    gauge(
      "sova_relay_cluster_remote_instances",
      "Instances connected to other nodes, in sessions this node knows.",
      () => c().nodes.reduce((n, x) => n + x.members, 0),
    );
    const total = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
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
    new Counter({
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
