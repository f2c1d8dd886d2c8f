/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4), written
 * by hand: the format is small, and the client libraries for it pull in a
 * registry and default collectors a compiled binary does not need. The rules
 * kept: one HELP and TYPE per family before its samples, names matching
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label values escaped (\\, ", newline), counters
 * ending in _total, histograms with cumulative `le` buckets ending in +Inf,
 * plus _sum and _count.
 */
import type { Histogram } from "./relay/stats.ts";
import type { Status } from "./status.ts";

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: Array<{ suffix?: string; labels?: Labels; value: number }>;
}

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(labels?: Labels): string {
  if (!labels || Object.keys(labels).length === 0) return "";
  return `{${Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
    .join(",")}}`;
}

export function renderFamilies(families: Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) out.push(`${f.name}${s.suffix ?? ""}${formatLabels(s.labels)} ${formatValue(s.value)}`);
  }
  return `${out.join("\n")}\n`;
}

function histogramSamples(h: Histogram): Family["samples"] {
  const samples: Family["samples"] = [];
  let cumulative = 0;
  h.bounds.forEach((bound, i) => {
    cumulative += h.counts[i]!;
    samples.push({ suffix: "_bucket", labels: { le: String(bound) }, value: cumulative });
  });
  cumulative += h.counts[h.bounds.length]!;
  samples.push({ suffix: "_bucket", labels: { le: "+Inf" }, value: cumulative });
  samples.push({ suffix: "_sum", value: h.sum });
  samples.push({ suffix: "_count", value: h.count });
  return samples;
}

function byLabel(label: string, counts: Record<string, number>): Family["samples"] {
  return Object.entries(counts).map(([k, value]) => ({ labels: { [label]: k }, value }));
}

export interface MetricsInput {
  status: Status;
  connectionsOpen: number;
  relayLatency: Histogram;
  memory: NodeJS.MemoryUsage;
}

export function renderMetrics({ status, connectionsOpen, relayLatency, memory }: MetricsInput): string {
  const t = status.totals;
  const perSession: Record<string, number> = {};
  const historyEntries: Record<string, number> = {};
  const historyBytes: Record<string, number> = {};
  for (const s of status.sessions) {
    if (s.instances > 0) perSession[s.id] = s.instances;
    if (s.history_entries > 0) {
      historyEntries[s.id] = s.history_entries;
      historyBytes[s.id] = s.history_bytes;
    }
  }
  return renderFamilies([
    { name: "sova_relay_build_info", help: "The relay's version.", type: "gauge", samples: [{ labels: { version: status.version }, value: 1 }] },
    { name: "sova_relay_up", help: "1 while the relay accepts connections, 0 once shutdown has begun.", type: "gauge", samples: [{ value: status.status === "ok" ? 1 : 0 }] },
    { name: "sova_relay_uptime_seconds", help: "Seconds since the relay started.", type: "gauge", samples: [{ value: status.uptime }] },
    { name: "sova_relay_connections_open", help: "Open TCP connections, registered or not.", type: "gauge", samples: [{ value: connectionsOpen }] },
    { name: "sova_relay_connections_total", help: "TCP connections accepted.", type: "counter", samples: [{ value: t.connections_opened }] },
    { name: "sova_relay_connections_refused_total", help: "Connections closed at accept (--allow/--deny, per-address cap, cool-down).", type: "counter", samples: [{ value: t.connections_refused }] },
    { name: "sova_relay_instances", help: "Registered instances per session (by its short hash).", type: "gauge", samples: byLabel("session", perSession) },
    { name: "sova_relay_history_entries", help: "Updates kept in a session's history (by its short hash).", type: "gauge", samples: byLabel("session", historyEntries) },
    { name: "sova_relay_history_bytes", help: "Bytes kept in a session's history.", type: "gauge", samples: byLabel("session", historyBytes) },
    { name: "sova_relay_registrations_accepted_total", help: "Registrations accepted.", type: "counter", samples: [{ value: t.registrations_accepted }] },
    { name: "sova_relay_registrations_rejected_total", help: "Registrations rejected, by reason.", type: "counter", samples: byLabel("reason", t.registrations_rejected) },
    { name: "sova_relay_messages_received_total", help: "Messages received, by type.", type: "counter", samples: byLabel("type", t.messages_received) },
    { name: "sova_relay_broadcasts_total", help: "StateUpdates relayed.", type: "counter", samples: [{ value: t.broadcasts }] },
    { name: "sova_relay_deliveries_total", help: "StateBroadcast frames queued to recipients.", type: "counter", samples: [{ value: t.deliveries }] },
    { name: "sova_relay_received_bytes_total", help: "Bytes read from instances.", type: "counter", samples: [{ value: t.bytes_in }] },
    { name: "sova_relay_sent_bytes_total", help: "Bytes written to instances.", type: "counter", samples: [{ value: t.bytes_out }] },
    { name: "sova_relay_drops_total", help: "Messages dropped, by reason.", type: "counter", samples: byLabel("reason", t.drops) },
    { name: "sova_relay_disconnects_total", help: "Connections ended, by reason.", type: "counter", samples: byLabel("reason", t.disconnects) },
    {
      name: "sova_relay_relay_latency_seconds",
      help: "Time from a StateUpdate's arrival to its last delivery being queued.",
      type: "histogram",
      samples: histogramSamples(relayLatency),
    },
    ...clusterFamilies(status),
    { name: "process_resident_memory_bytes", help: "Resident memory of the relay process.", type: "gauge", samples: [{ value: memory.rss }] },
    { name: "process_heap_bytes", help: "JavaScript heap in use.", type: "gauge", samples: [{ value: memory.heapUsed }] },
  ]);
}

/** Only for a cluster node (--cluster). */
function clusterFamilies(status: Status): Family[] {
  const c = status.cluster;
  if (!c) return [];
  return [
    { name: "sova_relay_cluster_connected", help: "1 while this node reaches NATS, 0 while it relays among its own instances only.", type: "gauge", samples: [{ value: c.connected ? 1 : 0 }] },
    { name: "sova_relay_cluster_nodes", help: "Other nodes heard within the down timeout.", type: "gauge", samples: [{ value: c.nodes.length }] },
    { name: "sova_relay_cluster_remote_instances", help: "Instances connected to other nodes, in sessions this node knows.", type: "gauge", samples: [{ value: c.nodes.reduce((n, x) => n + x.members, 0) }] },
    { name: "sova_relay_cluster_published_total", help: "StateBroadcast frames sent to the cluster.", type: "counter", samples: [{ value: c.published }] },
    { name: "sova_relay_cluster_received_total", help: "StateBroadcast frames received from other nodes.", type: "counter", samples: [{ value: c.received }] },
    { name: "sova_relay_cluster_gaps_total", help: "Frames from another node that never arrived, by sending node.", type: "counter", samples: byLabel("node", c.gaps) },
    { name: "sova_relay_cluster_unsent_total", help: "Frames not sent to the cluster while NATS was unreachable.", type: "counter", samples: [{ value: c.unsent }] },
    { name: "sova_relay_cluster_nodes_down_total", help: "Nodes declared down after the heartbeat timeout.", type: "counter", samples: [{ value: c.nodes_down }] },
    { name: "sova_relay_cluster_name_conflicts_total", help: "Names found claimed by another node when claiming them again after an outage.", type: "counter", samples: [{ value: c.name_conflicts }] },
    { name: "sova_relay_cluster_disconnects_total", help: "Times NATS became unreachable.", type: "counter", samples: [{ value: c.disconnects }] },
  ];
}
