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
import { requestUrl } from "../lib/hosts.ts";
import type { Logger } from "../lib/log.ts";
import { createKindTallyLine } from "../lib/repeats.ts";
import { createGuard } from "../transport/guard.ts";
import type { SpectatorKeys, Watcher, WatchedSession } from "../watch/index.ts";
import {
  createSpectatorStreams,
  emptySpectatorStats,
  finite,
  HEADERS,
  type SpectatorStats,
  type StreamLimits,
} from "./spectators.ts";
import { renderWatchPage, WATCH_CSP } from "./watch-page.ts";

export type { SpectatorStats } from "./spectators.ts";

export interface WatchOptions extends Partial<StreamLimits> {
  watcher: Watcher;
  /** The keys now (they are reloaded on SIGHUP). */
  keys: () => SpectatorKeys;
  /** The window of the `watch_key_rejected` and `spectators_limited` lines (tests only; 10 s). */
  logWindowMs?: number;
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

export interface WatchRoutes {
  /** The answer for a /watch/ path, or null: answer as for any unknown path. */
  route(req: Request, path: string, ip: string): Response | null;
  readonly stats: SpectatorStats;
  stop(): void;
}

const PATH = /^\/watch\/([^/]+)(?:\/(events|view))?\/?$/;

/** `members`: the names of a session's members now (shown as present). */
export function createWatchRoutes(
  options: WatchOptions,
  members: (session: string) => string[],
  log: Logger,
): WatchRoutes {
  const o = { ...WATCH_DEFAULTS, ...options };
  const stats = emptySpectatorStats();
  // Wrong keys are budgeted as failed registrations are (src/transport/guard.ts).
  const keyGuard = createGuard({
    allow: [],
    deny: [],
    maxConnectionsPerIp: Number.MAX_SAFE_INTEGER,
    maxFailedRegistrations: 10,
    cooldownMs: 10_000,
  });
  const notes = boundedNotes(log, o.backlogBytes, o.logWindowMs ?? 10_000);
  const note = notes.add;
  const streams = createSpectatorStreams(o, members, stats, note);

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
      const url = requestUrl(req);
      const since = req.headers.get("last-event-id") ?? url.searchParams.get("since") ?? undefined;
      if (m![2] === "events") {
        // A HEAD must not take a spectator's place it would never read from.
        if (req.method === "HEAD")
          return new Response(null, { headers: { ...HEADERS, "Content-Type": "text/event-stream" } });
        return streams.subscribe(s, ip, since);
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
      clearInterval(sweeper);
      streams.stop();
      notes.stop();
    },
  };
}

/**
 * Log lines for wrong keys, refusals and cuts: one of each kind per 10 s at most, with counts; what a burst
 * held is written when its 10 s end.
 */
function boundedNotes(log: Logger, backlogBytes: number, windowMs: number) {
  return createKindTallyLine(windowMs, ["wrong", "limited", "refused", "cut"] as const, (u) => {
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
        `/watch: ${u.cut} spectators cut for not reading (over ${backlogBytes} bytes unsent),` +
          ` ${u.refused} refused at a spectator cap (since the last such line)`,
        { reason: u.cut > 0 ? "not_reading" : "spectator_cap", cut: u.cut, refused: u.refused },
      );
  });
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
      const path = requestUrl(req).pathname;
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
