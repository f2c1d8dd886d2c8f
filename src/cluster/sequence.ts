/**
 * Frame sequence numbers. NATS core is at-most-once and ordered per publisher:
 * every frame carries its node's number for its session, and every heartbeat the
 * node's last number per session, so a lost frame shows as a gap (even the last
 * one before a quiet spell). A gap is counted per sending node and logged, one
 * line per 10 s at most whatever the losses; what the 10 s held is written when
 * they end.
 */
import type { Logger } from "../lib/log.ts";
import { createTallyLine } from "../lib/repeats.ts";
import type { SeenFrom } from "./history.ts";

export interface Sequences {
  /** Numbers this node's next frame in `session`. */
  next(session: string): number;
  /** This node's last frame number per session, for its heartbeats. */
  sent(): Record<string, number>;
  /** `q` from another node: a frame's number (`frame`), or what its heartbeat says it has sent. */
  check(from: string, epoch: number, session: string, q: number, frame: boolean): void;
  /** The last frame of `node` (this node too) in `session` that reached this node. */
  seen(node: string, session: string): SeenFrom | undefined;
  /** A node is gone: what was heard from it no longer counts. */
  forget(node: string): void;
  /** Frames from other nodes that never arrived, by sending node. */
  readonly gaps: Readonly<Record<string, number>>;
  /** Writes the gaps its log line holds back and clears its timer (the node's close). */
  stop(): void;
}

const GAP_LOG_WINDOW_MS = 10_000;

export interface SequencesContext {
  node: string;
  epoch: number;
  /** What `from`'s last heartbeat at `epoch` said it had sent in `session` (null: none heard). */
  sentBy(from: string, epoch: number, session: string): number | null;
}

export function createSequences(self: SequencesContext, log: Logger): Sequences {
  const out = new Map<string, number>();
  /** Last number seen, per sending node and session. */
  const heard = new Map<string, SeenFrom>();
  const gaps: Record<string, number> = {};
  // One line for every sending node: it names the last node with a gap.
  const line = createTallyLine<string>(GAP_LOG_WINDOW_MS, (unlogged, from) =>
    log.warn(
      "cluster_gap",
      `${unlogged} frames from node ${from} never arrived (NATS lost them); total lost from it: ${gaps[from]}`,
      { node: from, missing: unlogged },
    ),
  );

  function gap(from: string, missing: number): void {
    gaps[from] = (gaps[from] ?? 0) + missing;
    line.add(missing, from);
  }

  return {
    next(session) {
      const q = (out.get(session) ?? 0) + 1;
      out.set(session, q);
      return q;
    },
    sent: () => Object.fromEntries(out),
    check(from, epoch, session, q, frame) {
      if (!Number.isFinite(q) || !Number.isFinite(epoch)) return;
      const key = `${from}\u0000${session}`;
      const seen = heard.get(key);
      if (seen && seen.epoch === epoch) {
        const expected = frame ? seen.last + 1 : seen.last;
        if (q > expected) gap(from, q - expected);
        if (q > seen.last) seen.last = q;
        return;
      }
      if (seen && epoch < seen.epoch) return;
      // First word from this sender and session: what its last heartbeat counted is the start.
      const base = self.sentBy(from, epoch, session);
      if (base !== null && q > base + (frame ? 1 : 0)) gap(from, q - base - (frame ? 1 : 0));
      heard.set(key, { epoch, last: q });
    },
    seen(node, session) {
      if (node === self.node) return { epoch: self.epoch, last: out.get(session) ?? 0 };
      return heard.get(`${node}\u0000${session}`);
    },
    forget(node) {
      for (const key of heard.keys()) if (key.startsWith(`${node}\u0000`)) heard.delete(key);
    },
    gaps,
    stop: () => line.stop(),
  };
}
