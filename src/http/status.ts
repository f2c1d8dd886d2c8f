/**
 * What the relay looks like right now, as plain data for `/status`, the status
 * page and `/metrics`. Sessions appear by their keyed short hash and players
 * by their network, not their address; tokens are never held by the relay, so
 * none can leak from here.
 */
import { maskedAddress } from "../lib/cidr.ts";
import type { History } from "../core/history.ts";
import type { Instance, Relay, RelayOptions } from "../core/index.ts";
import { type CounterTotals, counterTotals } from "../core/stats.ts";
import { buildInfo } from "../lib/version.ts";
import type { ClusterStatus } from "../cluster/node.ts";
import type { StorageHealth } from "../storage/history-store.ts";
import type { DescriptorStats } from "../transport/descriptors.ts";

export interface StatusContext {
  relay: Relay;
  version: string;
  startedAt: number;
  stopping: () => boolean;
  history?: History;
  /** Present when the relay is a cluster node (--cluster). */
  cluster?: () => ClusterStatus;
  /** Whether history reaches the disk (--state-dir). */
  storage?: () => Readonly<StorageHealth> | undefined;
  /** File descriptors and accepts (Linux). */
  descriptors?: () => DescriptorStats;
}

export interface InstanceStatus {
  id: string;
  name: string;
  version: string;
  /** Seconds since the epoch, as the old relay reported it. */
  connected_at: number;
  last_activity: number;
  session: string;
  /** The peer's network only (net/cidr.ts maskedAddress): these pages need no login. */
  address: string;
  messages_in: number;
  messages_out: number;
  rate_limited: number;
  dropped: number;
}

export interface SessionStatus {
  id: string;
  instances: number;
  /** Seconds since the epoch; null for a session that has only history. */
  created_at: number | null;
  history_entries: number;
  history_bytes: number;
}

/** Every counter of src/core/stats.ts, under its `/status` name. */
export type StatusTotals = CounterTotals;

export interface Status {
  status: "ok" | "shutting_down";
  version: string;
  commit: string;
  /** The build target of a compiled binary, or "source". */
  target: string;
  connected_instances: number;
  uptime: number;
  started_at: number;
  connections: number;
  handshaking: number;
  /** Members kept for their grace window after losing their connection (docs/resume.md). */
  parked: number;
  /** Bytes held in sessions' resumption logs. */
  resume_buffer_bytes: number;
  instances: InstanceStatus[];
  sessions: SessionStatus[];
  limits: Record<string, number | boolean>;
  totals: StatusTotals;
  /** "degraded" while history cannot be written to --state-dir (the relay goes on); absent without one. */
  storage?: { state: "ok" | "degraded"; reason: string | null; write_failures: number };
  descriptors?: { limit: number | null; accept_failing_seconds: number; waiting: number };
  cluster?: ClusterStatus;
}

export function snapshot(ctx: StatusContext, now = Date.now()): Status {
  const { relay } = ctx;
  const { instances, sessions } = membership(relay, ctx.history);
  return {
    status: ctx.stopping() ? "shutting_down" : "ok",
    version: ctx.version,
    commit: buildInfo().commit,
    target: buildInfo().target,
    connected_instances: relay.instanceCount,
    uptime: Math.round((now - ctx.startedAt) / 100) / 10,
    started_at: Math.floor(ctx.startedAt / 1000),
    connections: relay.connections.size,
    handshaking: relay.handshaking,
    parked: relay.parked,
    resume_buffer_bytes: relay.resumeBufferBytes,
    instances,
    sessions,
    limits: limitsStatus(relay.options, ctx.history),
    totals: counterTotals(relay.stats),
    ...storageStatus(ctx),
    ...(ctx.descriptors ? { descriptors: descriptorStatus(ctx.descriptors()) } : {}),
    ...(ctx.cluster ? { cluster: ctx.cluster() } : {}),
  };
}

/** One row per session (live ones, then those kept only for their history) and one per instance in them. */
function membership(relay: Relay, history: History | undefined): Pick<Status, "instances" | "sessions"> {
  const instances: InstanceStatus[] = [];
  const sessions: SessionStatus[] = [];
  const sizes = history?.sizes() ?? new Map<string, { entries: number; bytes: number }>();
  for (const session of relay.sessions.values()) {
    const h = sizes.get(session.id);
    sizes.delete(session.id);
    sessions.push({
      id: session.id,
      instances: session.instances.length,
      created_at: Math.floor(session.createdAt / 1000),
      history_entries: h?.entries ?? 0,
      history_bytes: h?.bytes ?? 0,
    });
    for (const i of session.instances) instances.push(instanceStatus(i, session.id));
  }
  // Sessions nobody is in right now, kept for their history.
  for (const [id, h] of sizes)
    sessions.push({ id, instances: 0, created_at: null, history_entries: h.entries, history_bytes: h.bytes });
  return { instances, sessions };
}

function instanceStatus(i: Instance, session: string): InstanceStatus {
  return {
    id: i.idText,
    name: i.name,
    version: i.version,
    connected_at: Math.floor(i.connectedAt / 1000),
    last_activity: Math.floor(i.lastActivity / 1000),
    session,
    address: i.conn.state === "remote" ? i.conn.peer.address : maskedAddress(i.conn.peer.address),
    messages_in: i.messagesIn,
    messages_out: i.messagesOut,
    rate_limited: i.rateLimited,
    dropped: i.dropped,
  };
}

function limitsStatus(o: RelayOptions, history: History | undefined): Status["limits"] {
  return {
    max_instances: o.maxInstances,
    rate_limit_per_minute: o.rateLimit,
    max_message_size: o.maxMessageSize,
    handshake_timeout_seconds: o.handshakeTimeoutMs / 1000,
    idle_timeout_seconds: o.idleTimeoutMs / 1000,
    tokens_required: o.tokens.length > 0,
    history_entries: history?.limits.maxEntries ?? 0,
    history_bytes: history?.limits.maxBytes ?? 0,
    history_age_seconds: (history?.limits.maxAgeMs ?? 0) / 1000,
    max_instances_per_session: o.maxInstancesPerSession ?? o.maxInstances,
    max_instances_per_address: o.maxInstancesPerAddress ?? o.maxInstances,
    resume_window_seconds: (o.resumeWindowMs ?? 0) / 1000,
  };
}

function storageStatus(ctx: StatusContext): Pick<Status, "storage"> {
  const h = ctx.storage?.();
  if (!h) return {};
  return { storage: { state: h.degraded ? "degraded" : "ok", reason: h.reason, write_failures: h.writeFailures } };
}

/** Without `open`: counting descriptors reads /proc/self/fd, which /metrics does only when scraped. */
function descriptorStatus(d: DescriptorStats): NonNullable<Status["descriptors"]> {
  return { limit: d.limit, accept_failing_seconds: d.acceptFailingSeconds, waiting: d.waiting };
}
