/**
 * docs/reference/status.md: every field of `GET /status`, walked from a real
 * snapshot (src/http/status.ts) of a relay with an instance, history and a
 * cluster. Meanings are here, keyed by path; a field without one, or a meaning
 * for a field the snapshot does not have, stops the generator, so the page
 * cannot drift from the code. `totals` are described by the counters' own table.
 */
import { COUNTERS, COUNTER_KEYS } from "../../src/core/stats.ts";
import { snapshot } from "../../src/http/status.ts";
import { code, generatedNote, page, table } from "./markdown.ts";
import { sampleContext } from "./sample.ts";

/** Objects keyed by names known only at run time: shown as one field. */
const MAPS = new Set(["cluster.gaps"]);

const MEANING: Record<string, string> = {
  status: "`ok` or `shutting_down` once SIGTERM/SIGINT has been received",
  version: "the relay's version",
  commit: "the commit it was built from",
  target: "the build target of a compiled binary (`bun-linux-x64`...), or `source`",
  connected_instances:
    "instances registered on this relay (in a cluster, other nodes' are listed in `instances` but not counted here)",
  uptime: "seconds since start, one decimal",
  started_at: "start time, seconds since the epoch",
  connections: "open connections, TCP and WebSocket, registered or not",
  handshaking: "connections that have not registered yet",
  instances: "one entry per registered instance",
  "instances[].id": "the id the relay assigned (a UUID)",
  "instances[].name": "the instance's name",
  "instances[].version": "the Sova version it reported",
  "instances[].connected_at": "when it registered, seconds since the epoch",
  "instances[].last_activity": "when it last sent something, seconds since the epoch",
  "instances[].session": "its session's keyed short hash (12 hex digits), or `open` without tokens",
  "instances[].address":
    "its network, not its address: `203.0.x.x` (IPv4 /16) or the first 32 bits of IPv6; `node NAME` on another node",
  "instances[].messages_in": "messages received from it",
  "instances[].messages_out": "updates relayed to it, history replay included",
  "instances[].rate_limited": "its messages dropped by the rate limits",
  "instances[].dropped": "its messages or frames dropped for any reason",
  sessions: "one entry per session with instances or stored history",
  "sessions[].id": "the keyed short hash (or `open`)",
  "sessions[].instances": "instances in it",
  "sessions[].created_at": "seconds since the epoch; `null` for a session that only has history",
  "sessions[].history_entries": "updates kept for newcomers",
  "sessions[].history_bytes": "bytes those updates hold",
  limits: "the limits in force",
  "limits.max_instances": "`--max-instances`",
  "limits.rate_limit_per_minute": "`--rate-limit`",
  "limits.max_message_size": "`--max-message-size`",
  "limits.handshake_timeout_seconds": "`--handshake-timeout`",
  "limits.idle_timeout_seconds": "`--idle-timeout`",
  "limits.tokens_required": "`true` when tokens are configured",
  "limits.history_entries": "`--history` (0: off)",
  "limits.history_bytes": "`--history-bytes`",
  "limits.history_age_seconds": "`--history-age`",
  totals: "the counters below, also in `/metrics`",
  cluster: "only on a cluster node (`--cluster`)",
  "cluster.node": "this node's `--node-name`",
  "cluster.connected": "`true` while NATS is reachable",
  "cluster.names_shared": "`true` while names are claimed cluster-wide (JetStream KV); `false`: unique per node",
  "cluster.session_secret":
    "`agreed`, `given` (`--cluster-secret`, no JetStream), `unchecked` (NATS not reached yet), `own` or `refused`" +
    " (differs from the cluster's: not joined); docs/cluster-sessions.md",
  "cluster.nodes": "the other nodes heard from",
  "cluster.nodes[].name": "its node name",
  "cluster.nodes[].members": "instances connected to it",
  "cluster.nodes[].last_heard_ms": "milliseconds since its last heartbeat",
  "cluster.published": "frames sent to the cluster",
  "cluster.received": "frames received from other nodes",
  "cluster.gaps": "frames from another node that never arrived, by node name",
  "cluster.unsent": "frames not sent to the cluster (NATS unreachable, over max_payload)",
  "cluster.foreign": "messages on the frame subjects that were not a relay's, ignored",
  "cluster.nodes_down": "nodes declared down after their heartbeats stopped",
  "cluster.nodes_refused": "node starts heard with another session secret, kept out of this node's sessions",
  "cluster.name_conflicts": "names found claimed by another node after an outage",
  "cluster.disconnects": "times NATS became unreachable",
};

function typeOf(value: unknown): string {
  if (value === null) return "number or null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** [path, type] for every field, depth first, totals left out (they have their own table). */
function fields(value: Record<string, unknown>, prefix = ""): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [key, v] of Object.entries(value)) {
    const path = `${prefix}${key}`;
    out.push([path, MAPS.has(path) ? "object (by name)" : typeOf(v)]);
    if (path === "totals" || MAPS.has(path)) continue;
    if (Array.isArray(v) && typeof v[0] === "object")
      out.push(...fields(v[0] as Record<string, unknown>, `${path}[].`));
    else if (typeof v === "object" && v !== null && !Array.isArray(v))
      out.push(...fields(v as Record<string, unknown>, `${path}.`));
  }
  return out;
}

export function statusPage(): string {
  const found = fields(snapshot(sampleContext()) as unknown as Record<string, unknown>);
  const missing = found.filter(([path]) => MEANING[path] === undefined).map(([p]) => p);
  const stale = Object.keys(MEANING).filter((p) => !found.some(([path]) => path === p));
  if (missing.length > 0 || stale.length > 0)
    throw new Error(
      `scripts/reference/status.ts: /status fields without a meaning: ${missing.join(", ") || "none"};` +
        ` meanings for fields /status no longer has: ${stale.join(", ") || "none"}`,
    );
  const totals = COUNTER_KEYS.map((key) => {
    const spec: { status: string; help: string; metric: string; label?: string } = COUNTERS[key];
    return [code(spec.status), spec.label ? `object by ${spec.label}` : "number", spec.help, code(spec.metric)];
  });
  return page(
    generatedNote("src/http/status.ts and src/core/stats.ts (scripts/reference/status.ts)"),
    "# `/status`",
    "`GET /status` on the HTTP listener returns the relay's state as JSON; the status page (`/`) and" +
      " `/metrics` are made from the same snapshot. It needs no login and shows no token, and nothing" +
      " that leads back to one: sessions are named by a keyed hash, players by their network.",
    "## Fields",
    table(
      ["field", "type", "meaning"],
      found.map(([path, type]) => [code(path), type, MEANING[path]!]),
    ),
    "## `totals`",
    table(["field", "type", "meaning", "in /metrics"], totals),
  );
}
