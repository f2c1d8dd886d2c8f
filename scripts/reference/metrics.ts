/**
 * docs/reference/metrics.md: every family `/metrics` serves, read back from a
 * registry built by src/http/metrics.ts itself (with the cluster's and the
 * WebSocket endpoint's parts on, so every family shows).
 */
import { COUNTERS, COUNTER_KEYS } from "../../src/core/stats.ts";
import { createMetrics, type MetricFamily } from "../../src/http/metrics.ts";
import { PEER_FAULT } from "../../src/protocol/wire-errors.ts";
import { code, generatedNote, page, table } from "./markdown.ts";
import { sampleContext } from "./sample.ts";
import { emptySpectatorStats } from "../../src/http/spectators.ts";
import { emptyWatchStats } from "../../src/watch/index.ts";

/** The families src/core/stats.ts's table gives the values of. */
const COUNTERS_METRICS: ReadonlySet<string> = new Set(COUNTER_KEYS.map((k) => COUNTERS[k].metric));

/** Labels whose values are a fixed set: a relay that has seen nothing exposes each of them, at 0. */
const CLOSED_LABELS = new Set(["reason", "outcome", "kind", "transport"]);

/**
 * Label values known in advance: read back from what `exposition` (the sample relay's /metrics) shows for the
 * closed labels, so a value added in src/http/metrics.ts shows here without a second list to keep; the counters'
 * tables for the rest.
 */
function knownValues(exposition: string): Map<string, readonly string[]> {
  const known = new Map<string, string[]>();
  for (const key of COUNTER_KEYS) {
    const spec: { metric: string; keys?: readonly string[] } = COUNTERS[key];
    if (spec.keys) known.set(spec.metric, [...spec.keys]);
  }
  known.set("sova_relay_registrations_rejected_total", Object.keys(PEER_FAULT));
  for (const [, family, label, value] of exposition.matchAll(/^(\w+)\{(\w+)="([^"]*)"\} /gm)) {
    if (!CLOSED_LABELS.has(label!) || COUNTERS_METRICS.has(family!)) continue;
    const values = known.get(family!) ?? [];
    if (!values.includes(value!)) values.push(value!);
    known.set(family!, values);
  }
  return known;
}

/** Where a family comes from, by name: only a cluster node has the cluster's. */
function when(f: MetricFamily): string {
  if (f.standard) return "always (prom-client)";
  if (f.name.startsWith("sova_relay_cluster_")) return "with `--cluster`";
  return "always";
}

function labels(f: MetricFamily, known: Map<string, readonly string[]>): string {
  if (f.type === "histogram") return "`le`";
  const values = known.get(f.name);
  return f.labels.map((l) => (values ? `${code(l)}: ${values.map(code).join(", ")}` : code(l))).join("; ");
}

export async function metricsPage(): Promise<string> {
  const endpoint = await createMetrics(sampleContext(), {
    events: () => ({ subscribers: 0, refused: 0, cut: 0, rotated: 0, yielded: 0, gone: 0 }),
    refused: () => ({ host: 0 }),
    transports: () => {
      const zero = { tcp: 0, websocket: 0 };
      return { open: zero, opened: zero, bytesIn: zero, bytesOut: zero, websocketRefused: {} };
    },
    watch: () => ({ spectators: emptySpectatorStats(), watcher: emptyWatchStats() }),
  });
  const known = knownValues(await endpoint.render());
  const families = endpoint.families();
  const rows = (standard: boolean) =>
    families
      .filter((f) => f.standard === standard)
      .map((f) => [code(f.name), f.type, labels(f, known), f.help, when(f)]);
  const headers = ["family", "type", "labels", "help", "present"];
  return page(
    generatedNote("src/http/metrics.ts and src/core/stats.ts (scripts/reference/metrics.ts)"),
    "# Metrics",
    "`GET /metrics` on the HTTP listener (`--http-port`, default 8080, on `--http-host`, default" +
      " `127.0.0.1`) serves the Prometheus text format. Counters count from the relay's start." +
      " Sessions appear by their keyed short hash, never by token. Scraping it from a container:" +
      " [docker.md](../docker.md#monitoring-with-prometheus).",
    `## The relay's families (${families.filter((f) => !f.standard).length})`,
    table(headers, rows(false)),
    "`sova_relay_relay_latency_seconds` is a histogram with buckets from 10 µs to 100 ms.",
    `## Process families (${families.filter((f) => f.standard).length})`,
    "prom-client's standard process metrics, less those that report nothing or mislead under Bun" +
      " (src/http/metrics.ts lists them and why). On Linux:",
    table(headers, rows(true)),
  );
}
