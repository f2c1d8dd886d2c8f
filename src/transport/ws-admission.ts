/**
 * Who may upgrade to a WebSocket on /relay, decided before Bun upgrades: the
 * page's Origin, and room among the WebSocket handshakes.
 *
 * Bun holds a WebSocket message until it is whole, up to --max-message-size for
 * every connection (one limit per listener), so fewer WebSocket handshakes may
 * run at once than TCP ones: an eighth of --max-handshakes (16 by default).
 * Refusing the next upgrade once they were taken let two addresses keep every
 * WebSocket player out by holding 16 silent sockets (WebSocket joins: 0 of 60).
 * Now a WebSocket has FIRST_FRAME_MS after its upgrade to register, and when the
 * handshakes are all taken the next upgrade evicts one, chosen as TCP's are
 * (src/core/eviction.ts: the oldest of the address holding the most).
 */
import { addressGroup } from "../lib/cidr.ts";
import { originAllowed } from "../lib/hosts.ts";
import { byGroup, type Candidate, pickHandshakeVictim } from "../core/eviction.ts";

/**
 * Sova and the tunnel send their RegisterInstance as soon as the upgrade is done (half a round trip
 * later); a relay starved of CPU may read it seconds late, so the deadline is generous.
 */
export const FIRST_FRAME_MS = 5000;
/** A WebSocket handshake may hold a whole message; a TCP one 4 KiB. */
const WS_SHARE = 8;
const OPENS_WINDOW_MS = 10_000;
const MAX_OPEN_GROUPS = 10_000;

export interface WsAdmissionOptions {
  /** --max-handshakes: WebSocket handshakes get an eighth of it. */
  maxHandshakes: number;
  maxHandshakesPerIp: number;
  /** Origins (lower case, scheme://host[:port]) whose pages may upgrade. */
  allowOrigin: readonly string[];
  /** Host names answered beside IP addresses, localhost and dotless names (the relay's own pages may upgrade). */
  allowHost: readonly string[];
}

/** A WebSocket not registered yet, as the admission sees it. */
export interface WsHandshake<T> extends Candidate {
  readonly peer: T;
}

export type Eviction = "first_frame_timeout" | "handshake_limit";

export interface WsAdmission {
  /** WebSocket handshakes allowed at once. */
  readonly cap: number;
  /** Null when the Origin may upgrade (sent to `host`); else why not (for the refusal). */
  originRefused(origin: string | null, host: string | null): string | null;
  /**
   * Before upgrading one more from `ip`: the handshakes to close now (past their first-frame deadline, or one
   * evicted for room), and whether the newcomer is refused instead (eviction.ts found none to take).
   */
  makeRoom<T>(
    handshakes: readonly WsHandshake<T>[],
    ip: string,
    now: number,
  ): { close: Array<{ peer: T; why: Eviction }>; refuse: boolean };
  /** An upgrade from `ip` went through. */
  opened(ip: string, now: number): void;
}

export function createWsAdmission(options: WsAdmissionOptions): WsAdmission {
  const cap = Math.max(1, Math.floor(options.maxHandshakes / WS_SHARE));
  const allowed = new Set(options.allowOrigin);
  const hosts = new Set(options.allowHost);
  const opens = new Map<string, number>();
  let opensSince = 0;

  return {
    cap,
    originRefused(origin, host) {
      // Browsers always send Origin on a WebSocket upgrade; Sova's relay client and the tunnel never do.
      if (originAllowed(origin, host, allowed, hosts)) return null;
      return `a web page (Origin ${origin!.slice(0, 100)}) may not join a session`;
    },
    makeRoom(handshakes, ip, now) {
      const close: Array<{ peer: (typeof handshakes)[number]["peer"]; why: Eviction }> = [];
      const live: (typeof handshakes)[number][] = [];
      for (const h of handshakes) {
        if (now - h.openedAt >= FIRST_FRAME_MS) close.push({ peer: h.peer, why: "first_frame_timeout" });
        else live.push(h);
      }
      if (live.length < cap) return { close, refuse: false };
      const group = addressGroup(ip);
      // Past its own cap the newcomer is closed after the upgrade anyway (src/core/limits.ts): evict no one for it.
      if (live.filter((h) => h.group === group).length >= options.maxHandshakesPerIp) return { close, refuse: false };
      const newcomer = { group, openedAt: now, peer: null as (typeof live)[number]["peer"] };
      const victim = pickHandshakeVictim(
        byGroup(live, newcomer),
        newcomer,
        now,
        () => true,
        (g) => opens.get(g) ?? 0,
      );
      if (victim === null) return { close, refuse: true };
      close.push({ peer: victim.peer, why: "handshake_limit" });
      return { close, refuse: false };
    },
    opened(ip, now) {
      if (now - opensSince >= OPENS_WINDOW_MS) {
        opens.clear();
        opensSince = now;
      }
      const group = addressGroup(ip);
      if (opens.size < MAX_OPEN_GROUPS || opens.has(group)) opens.set(group, (opens.get(group) ?? 0) + 1);
    },
  };
}
