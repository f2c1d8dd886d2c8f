/**
 * The spectator side of the HTTP listener:
 *   GET /watch/KEY          the page (server-rendered; ?projector=1 for a projector)
 *   GET /watch/KEY/events   server-sent events: a snapshot (or, with Last-Event-ID
 *                           or ?since=, the changes since), then the changes a few
 *                           times a second, coalesced
 *   GET /watch/KEY/view     the same view as JSON (?since= for the changes)
 *
 * A key that opens no session gets what any unknown path gets (the server's 404),
 * and costs its address one of a small budget: 10 wrong keys in a burst, 10 a
 * minute back; once spent, every /watch/ path from that address answers as unknown
 * for 10 s, right key or not, so guessing gains nothing from the answers.
 *
 * Spectators are bounded per relay, per address (IPv6 /64) and per session; one
 * that does not take what it is sent is cut, as /events subscribers are, and each
 * stream ends after a byte budget (the browser reconnects and resumes).
 */
import { addressGroup } from "../lib/cidr.ts";
import type { Logger } from "../lib/log.ts";
import { createGuard } from "../transport/guard.ts";
import type { SpectatorKeys, View, Watcher, WatchedSession } from "../watch/index.ts";
import { renderWatchPage, WATCH_CSP } from "./watch-page.ts";

export interface WatchOptions {
  watcher: Watcher;
  /** The keys now (they are reloaded on SIGHUP). */
  keys: () => SpectatorKeys;
  maxSpectators?: number;
  maxSpectatorsPerAddress?: number;
  maxSpectatorsPerSession?: number;
  /** How often changes are pushed, coalesced, in ms. */
  tickMs?: number;
  /** Bytes queued for a spectator and not taken by its socket before it is cut as not reading. */
  backlogBytes?: number;
  /** Bytes one stream carries before it ends and the browser resumes it. */
  streamBytes?: number;
  /** A comment line this often keeps quiet streams open through proxies and Bun's idle timeout. */
  heartbeatMs?: number;
}

export const WATCH_DEFAULTS = {
  maxSpectators: 64,
  maxSpectatorsPerAddress: 8,
  maxSpectatorsPerSession: 48,
  tickMs: 250,
  backlogBytes: 256 * 1024,
  streamBytes: 8 << 20,
  heartbeatMs: 10_000,
};

export interface SpectatorStats {
  spectators: number;
  refused: { relay: number; address: number; session: number };
  /** Cut for not reading. */
  cut: number;
  /** Ended at the stream's byte budget (resumed by the browser). */
  rotated: number;
  /** Wrong keys, and requests answered as unknown while their address cooled down. */
  wrongKeys: number;
  keyLimited: number;
}

export interface WatchRoutes {
  /** The answer for a /watch/ path, or null: answer as for any unknown path. */
  route(req: Request, path: string, ip: string): Response | null;
  readonly stats: SpectatorStats;
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

const HEADERS = { "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store" };
const encoder = new TextEncoder();
const PATH = /^\/watch\/([^/]+)(?:\/(events|view))?\/?$/;

/** JSON has no NaN or Infinity: they are sent as their names (the page shows them as text). */
const finite = (_: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v);

function event(view: View): Uint8Array {
  const kind = view.from === undefined ? "snapshot" : "delta";
  return encoder.encode(`id: ${view.id}\nevent: ${kind}\ndata: ${JSON.stringify(view, finite)}\n\n`);
}

/** `members`: the names of a session's members now (shown as present). */
export function createWatchRoutes(
  options: WatchOptions,
  members: (session: string) => string[],
  log: Logger,
): WatchRoutes {
  const o = { ...WATCH_DEFAULTS, ...options };
  const spectators = new Set<Spectator>();
  const bySession = new Map<string, Set<Spectator>>();
  const byGroup = new Map<string, number>();
  const stats: SpectatorStats = {
    spectators: 0,
    refused: { relay: 0, address: 0, session: 0 },
    cut: 0,
    rotated: 0,
    wrongKeys: 0,
    keyLimited: 0,
  };
  // Wrong keys are budgeted as failed registrations are (src/transport/guard.ts).
  const keyGuard = createGuard({
    allow: [],
    deny: [],
    maxConnectionsPerIp: Number.MAX_SAFE_INTEGER,
    maxFailedRegistrations: 10,
    cooldownMs: 10_000,
  });
  let ticker: Timer | null = null;
  let beatAt = performance.now();
  // One line per 10 s at most, with counts, whatever a flood of guesses or pages does.
  let loggedAt = -Infinity;
  let unlogged = { wrong: 0, limited: 0, refused: 0, cut: 0 };

  function note(kind: keyof typeof unlogged): void {
    unlogged[kind]++;
    const now = performance.now();
    if (now - loggedAt < 10_000) return;
    loggedAt = now;
    const u = unlogged;
    if (u.wrong + u.limited > 0)
      log.warn(
        "watch_key_rejected",
        `/watch: ${u.wrong} requests with a key that opens no session, ${u.limited} answered as unknown while` +
          " their address cooled down (since the last such line)",
        { reason: "wrong_key", wrong: u.wrong, limited: u.limited },
      );
    if (u.refused + u.cut > 0)
      log.warn(
        "spectators_limited",
        `/watch: ${u.cut} spectators cut for not reading (over ${o.backlogBytes} bytes unsent),` +
          ` ${u.refused} refused at a spectator cap (since the last such line)`,
        { reason: u.cut > 0 ? "not_reading" : "spectator_cap", cut: u.cut, refused: u.refused },
      );
    unlogged = { wrong: 0, limited: 0, refused: 0, cut: 0 };
  }

  function drop(sub: Spectator): void {
    if (!spectators.delete(sub)) return;
    bySession.get(sub.session)?.delete(sub);
    if (bySession.get(sub.session)?.size === 0) bySession.delete(sub.session);
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

  function push(): void {
    const beat = performance.now() - beatAt >= o.heartbeatMs;
    if (beat) beatAt = performance.now();
    for (const [id, subs] of bySession) {
      const s = o.watcher.session(id);
      if (!s) {
        // Its key was withdrawn (SIGHUP): its spectators go.
        for (const sub of [...subs]) {
          drop(sub);
          sub.controller.close();
        }
        continue;
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
  }

  function subscribe(s: WatchedSession, ip: string, since: string | undefined): Response {
    const group = addressGroup(ip);
    const full =
      spectators.size >= o.maxSpectators
        ? (["relay", `too many spectators on this relay (${o.maxSpectators})`] as const)
        : (byGroup.get(group) ?? 0) >= o.maxSpectatorsPerAddress
          ? (["address", `too many spectators from your address (${o.maxSpectatorsPerAddress})`] as const)
          : (bySession.get(s.id)?.size ?? 0) >= o.maxSpectatorsPerSession
            ? (["session", `too many spectators of this session (${o.maxSpectatorsPerSession})`] as const)
            : null;
    if (full) {
      stats.refused[full[0]]++;
      note("refused");
      return new Response(`${full[1]}; try again later\n`, {
        status: 503,
        headers: { ...HEADERS, "Content-Type": "text/plain", "Retry-After": "10" },
      });
    }
    s.members(members(s.id));
    let self: Spectator;
    const stream = new ReadableStream<Uint8Array>(
      {
        start(controller) {
          self = { controller, session: s.id, group, since: "", sent: 0 };
          spectators.add(self);
          if (!bySession.has(s.id)) bySession.set(s.id, new Set());
          bySession.get(s.id)!.add(self);
          byGroup.set(group, (byGroup.get(group) ?? 0) + 1);
          stats.spectators = spectators.size;
          const view = s.view(since);
          send(self, encoder.encode("retry: 2000\n\n"));
          send(self, event(view), view.id);
          ticker ??= setInterval(push, o.tickMs);
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
  }

  /** The session a request's key opens, counting the attempt against its address when it opens none. */
  function opened(key: string, ip: string): WatchedSession | null {
    const now = Date.now();
    if (keyGuard.registrationWait(ip, now) > 0) {
      stats.keyLimited++;
      note("limited");
      return null;
    }
    const id = o.keys().session(key);
    const s = id === null ? undefined : o.watcher.session(id);
    if (s) return s;
    stats.wrongKeys++;
    keyGuard.registrationFailed(ip, now);
    note("wrong");
    return null;
  }

  const sweeper = setInterval(() => keyGuard.sweep(Date.now()), 10_000);

  return {
    stats,
    route(req, path, ip) {
      const m = PATH.exec(path);
      const s = opened(m?.[1] ?? "", ip);
      if (!s || (req.method !== "GET" && req.method !== "HEAD")) return null;
      const url = new URL(req.url);
      const since = req.headers.get("last-event-id") ?? url.searchParams.get("since") ?? undefined;
      if (m![2] === "events") {
        // A HEAD must not take a spectator's place it would never read from.
        if (req.method === "HEAD")
          return new Response(null, { headers: { ...HEADERS, "Content-Type": "text/event-stream" } });
        return subscribe(s, ip, since);
      }
      s.members(members(s.id));
      if (m![2] === "view")
        return new Response(JSON.stringify(s.view(since), finite), {
          headers: { ...HEADERS, "Content-Type": "application/json" },
        });
      const page = renderWatchPage(s.view(), { projector: url.searchParams.get("projector") === "1", session: s.id });
      return new Response(req.method === "HEAD" ? null : page, {
        headers: { ...HEADERS, "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": WATCH_CSP },
      });
    },
    stop() {
      if (ticker) clearInterval(ticker);
      clearInterval(sweeper);
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

const NOT_FOUND = () =>
  new Response("not found\n", { status: 404, headers: { ...HEADERS, "Content-Type": "text/plain" } });

export interface WatchServer {
  readonly port: number;
  stop(): void;
}

/** A listener with the spectator routes alone (`sova-relay replay --watch`: no relay, no status page). */
export function serveWatch(
  listen: { host: string; port: number },
  options: WatchOptions,
  members: (session: string) => string[],
  log: Logger,
): WatchServer {
  const routes = createWatchRoutes(options, members, log);
  const server = Bun.serve({
    hostname: listen.host,
    port: listen.port,
    idleTimeout: 30,
    fetch(req, server) {
      const path = new URL(req.url).pathname;
      if (!path.startsWith("/watch/")) return NOT_FOUND();
      return routes.route(req, path, server.requestIP(req)?.address ?? "") ?? NOT_FOUND();
    },
  });
  return {
    port: server.port!,
    stop() {
      routes.stop();
      void server.stop(true);
    },
  };
}
