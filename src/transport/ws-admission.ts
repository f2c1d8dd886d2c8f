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
 * (src/core/eviction.ts: from the address holding the most).
 */
import { addressGroup } from "../lib/cidr.ts";
import { type Candidate, pickHandshakeVictim } from "../core/eviction.ts";

/** Sova and the tunnel send their RegisterInstance as soon as the upgrade is done: half a round trip. */
export const FIRST_FRAME_MS = 2000;
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
}

/** A WebSocket not registered yet, as the admission sees it. */
export interface WsHandshake<T> extends Candidate {
  readonly peer: T;
}

export type Eviction = "first_frame_timeout" | "handshake_limit";

export interface WsAdmission {
  /** WebSocket handshakes allowed at once. */
  readonly cap: number;
  /** Null when the Origin may upgrade; else why not (for the refusal). */
  originRefused(origin: string | null): string | null;
  /**
   * Before upgrading one more from `ip`: the handshakes to close now (past their first-frame deadline, or one
   * evicted for room). Returns nothing to close when the newcomer's own address is at its cap (it is refused).
   */
  makeRoom<T>(handshakes: readonly WsHandshake<T>[], ip: string, now: number): Array<{ peer: T; why: Eviction }>;
  /** An upgrade from `ip` went through. */
  opened(ip: string, now: number): void;
}

export function createWsAdmission(options: WsAdmissionOptions): WsAdmission {
  const cap = Math.max(1, Math.floor(options.maxHandshakes / WS_SHARE));
  const allowed = new Set(options.allowOrigin);
  const opens = new Map<string, number>();
  let opensSince = 0;

  return {
    cap,
    originRefused(origin) {
      // Browsers always send Origin on a WebSocket upgrade; Sova's relay client and the tunnel never do.
      if (origin === null || allowed.has(origin.toLowerCase())) return null;
      return `a web page (Origin ${origin.slice(0, 100)}) may not join a session`;
    },
    makeRoom(handshakes, ip, now) {
      const out: Array<{ peer: (typeof handshakes)[number]["peer"]; why: Eviction }> = [];
      const live: (typeof handshakes)[number][] = [];
      for (const h of handshakes) {
        if (now - h.openedAt >= FIRST_FRAME_MS) out.push({ peer: h.peer, why: "first_frame_timeout" });
        else live.push(h);
      }
      const group = addressGroup(ip);
      const own = live.filter((h) => h.group === group).length;
      if (live.length >= cap && own < options.maxHandshakesPerIp) {
        const victim = pickHandshakeVictim(live, now, (g) => opens.get(g) ?? 0);
        if (victim !== null) out.push({ peer: victim.peer, why: "handshake_limit" });
      }
      return out;
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
