/**
 * Spectators' event streams (/watch/KEY/events): each gets its session's view
 * (all of it, or what changed since the id it resumes from), then, every tick,
 * what changed since the last view it was sent, encoded once for all the
 * spectators of a session that stand at the same point. Bounded per relay, per
 * address (IPv6: /64) and per session; a spectator whose socket stops taking
 * what it is sent is cut; a stream ends after a byte budget and the browser
 * resumes it with Last-Event-ID.
 */
import { addressGroup } from "../lib/cidr.ts";
import type { View, Watcher, WatchedSession } from "../watch/index.ts";

export interface StreamLimits {
  maxSpectators: number;
  maxSpectatorsPerAddress: number;
  maxSpectatorsPerSession: number;
  /** How often changes are pushed, coalesced, in ms. */
  tickMs: number;
  /** Bytes queued for a spectator and not taken by its socket before it is cut as not reading. */
  backlogBytes: number;
  /** Bytes one stream carries before it ends and the browser resumes it. */
  streamBytes: number;
  /** A comment line this often keeps quiet streams open through proxies and Bun's idle timeout. */
  heartbeatMs: number;
}

export interface SpectatorStats {
  spectators: number;
  refused: { relay: number; address: number; session: number };
  /** Cut for not reading. */
  cut: number;
  /** Ended at the stream's byte budget (resumed by the browser). */
  rotated: number;
  /** Found closed when a frame was queued (the page had gone unnoticed): that frame was not sent. */
  gone: number;
  /** Wrong keys, and requests answered as unknown while their address cooled down. */
  wrongKeys: number;
  keyLimited: number;
}

export function emptySpectatorStats(): SpectatorStats {
  return {
    spectators: 0,
    refused: { relay: 0, address: 0, session: 0 },
    cut: 0,
    rotated: 0,
    gone: 0,
    wrongKeys: 0,
    keyLimited: 0,
  };
}

export interface SpectatorStreams {
  subscribe(s: WatchedSession, ip: string, since: string | undefined): Response;
  stop(): void;
}

interface Spectator {
  controller: ReadableStreamDefaultController<Uint8Array>;
  session: string;
  group: string;
  /** The id of the last view sent. */
  since: string;
  sent: number;
}

export const HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};
const encoder = new TextEncoder();

/** JSON has no NaN or Infinity: they are sent as their names (the page shows them as text). */
export const finite = (_: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v);

function event(view: View): Uint8Array {
  const kind = view.from === undefined ? "snapshot" : "delta";
  return encoder.encode(`id: ${view.id}\nevent: ${kind}\ndata: ${JSON.stringify(view, finite)}\n\n`);
}

/** The first event of a new spectator: from where it left off, else the session's snapshot (shared, in `snapshots`). */
function _first(
  snapshots: Map<string, [string, Uint8Array]>,
  s: WatchedSession,
  since: string | undefined,
): [Uint8Array, string] {
  if (s.resumable(since) !== undefined) {
    const view = s.view(since);
    return [event(view), view.id];
  }
  const id = `${s.epoch}:${s.version}`;
  let cached = snapshots.get(s.id);
  if (cached?.[0] !== id) {
    cached = [id, event(s.view())];
    snapshots.set(s.id, cached);
  }
  return [cached[1], id];
}

/** Which cap a new spectator from `group` meets (its session has `inSession` already), if any, and what it is told. */
function _full(
  o: StreamLimits,
  total: number,
  byGroup: Map<string, number>,
  inSession: number,
  group: string,
): ["relay" | "address" | "session", string] | null {
  if (total >= o.maxSpectators) return ["relay", `too many spectators on this relay (${o.maxSpectators})`];
  if ((byGroup.get(group) ?? 0) >= o.maxSpectatorsPerAddress)
    return ["address", `too many spectators from your address (${o.maxSpectatorsPerAddress})`];
  if (inSession >= o.maxSpectatorsPerSession)
    return ["session", `too many spectators of this session (${o.maxSpectatorsPerSession})`];
  return null;
}

function _refused(text: string): Response {
  return new Response(`${text}; try again later\n`, {
    status: 503,
    headers: { ...HEADERS, "Content-Type": "text/plain", "Retry-After": "10" },
  });
}

/**
 * `members`: the names of a session's members now; `note`: told of each refusal and cut (for bounded logging);
 * `stats`: counted into.
 */
export function createSpectatorStreams(
  o: StreamLimits & { watcher: Watcher },
  members: (session: string) => string[],
  stats: SpectatorStats,
  note: (kind: "refused" | "cut") => void,
): SpectatorStreams {
  const spectators = new Set<Spectator>();
  const bySession = new Map<string, Set<Spectator>>();
  const byGroup = new Map<string, number>();
  let ticker: Timer | null = null;
  let beatAt = performance.now();
  // The last snapshot of each session, encoded: pages opening together (a projector's room, a reload) share it.
  const snapshots = new Map<string, [string, Uint8Array]>();

  function drop(sub: Spectator): void {
    if (!spectators.delete(sub)) return;
    bySession.get(sub.session)?.delete(sub);
    if (bySession.get(sub.session)?.size === 0) {
      bySession.delete(sub.session);
      snapshots.delete(sub.session);
    }
    const n = (byGroup.get(sub.group) ?? 1) - 1;
    if (n <= 0) byGroup.delete(sub.group);
    else byGroup.set(sub.group, n);
    stats.spectators = spectators.size;
    if (spectators.size === 0 && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  /** Queues bytes; cuts a spectator whose socket has not taken what it was given. */
  function send(sub: Spectator, bytes: Uint8Array, since?: string): void {
    // With a byte-length strategy and no high-water mark, -desiredSize is what the socket has not taken.
    if (-(sub.controller.desiredSize ?? 0) > o.backlogBytes) {
      drop(sub);
      stats.cut++;
      note("cut");
      try {
        sub.controller.error(new Error("spectator not reading"));
      } catch {}
      return;
    }
    try {
      sub.controller.enqueue(bytes);
    } catch {
      // The stream closed without its cancel being called: the frame goes nowhere, and is counted.
      stats.gone++;
      return drop(sub);
    }
    if (since !== undefined) sub.since = since;
    sub.sent += bytes.byteLength;
    if (sub.sent >= o.streamBytes) {
      drop(sub);
      stats.rotated++;
      sub.controller.close();
    }
  }

  /** One session's spectators brought up to date (or told the stream is alive). */
  function pushSession(id: string, subs: Set<Spectator>, beat: boolean): void {
    const s = o.watcher.session(id);
    if (!s) {
      // Its key was withdrawn (SIGHUP): its spectators go.
      for (const sub of [...subs]) {
        drop(sub);
        sub.controller.close();
      }
      return;
    }
    s.members(members(id));
    const current = `${s.epoch}:${s.version}`;
    // One encoding per distinct starting point: after a tick, every spectator of a session shares one.
    const made = new Map<string, [Uint8Array, string]>();
    for (const sub of [...subs]) {
      if (sub.since === current) {
        if (beat) send(sub, encoder.encode(": still here\n\n"));
        continue;
      }
      let e = made.get(sub.since);
      if (!e) {
        const view = s.view(sub.since);
        e = [event(view), view.id];
        made.set(sub.since, e);
      }
      send(sub, e[0], e[1]);
    }
  }

  function push(): void {
    const beat = performance.now() - beatAt >= o.heartbeatMs;
    if (beat) beatAt = performance.now();
    for (const [id, subs] of bySession) pushSession(id, subs, beat);
  }

  function open(controller: ReadableStreamDefaultController<Uint8Array>, s: WatchedSession, group: string): Spectator {
    const self: Spectator = { controller, session: s.id, group, since: "", sent: 0 };
    spectators.add(self);
    if (!bySession.has(s.id)) bySession.set(s.id, new Set());
    bySession.get(s.id)!.add(self);
    byGroup.set(group, (byGroup.get(group) ?? 0) + 1);
    stats.spectators = spectators.size;
    ticker ??= setInterval(push, o.tickMs);
    return self;
  }

  return {
    subscribe(s, ip, since) {
      const group = addressGroup(ip);
      const refusal = _full(o, spectators.size, byGroup, bySession.get(s.id)?.size ?? 0, group);
      if (refusal) {
        stats.refused[refusal[0]]++;
        note("refused");
        return _refused(refusal[1]);
      }
      s.members(members(s.id));
      let self: Spectator;
      const stream = new ReadableStream<Uint8Array>(
        {
          start(controller) {
            self = open(controller, s, group);
            const [bytes, id] = _first(snapshots, s, since);
            send(self, encoder.encode("retry: 2000\n\n"));
            send(self, bytes, id);
          },
          cancel() {
            drop(self);
          },
        },
        { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
      );
      return new Response(stream, {
        headers: { ...HEADERS, "Content-Type": "text/event-stream; charset=utf-8", Connection: "keep-alive" },
      });
    },
    stop() {
      if (ticker) clearInterval(ticker);
      for (const sub of spectators) {
        try {
          sub.controller.close();
        } catch {}
      }
      spectators.clear();
      bySession.clear();
    },
  };
}
