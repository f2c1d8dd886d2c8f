/**
 * The relay's limits (docs/protocol.md, "Limits"): messages and bytes per
 * instance over any 60 s, registrations per address, instance slots (relay,
 * session, address), and the caps on connections still handshaking. Time comes
 * from the state's clock.
 */
import { cut, deliver } from "./connection.ts";
import { pickHandshakeVictim } from "./eviction.ts";
import { errorFrame, logRepeated, RATE_WINDOW_MS, type RelayState, who } from "./state.ts";
import type { Connection, Instance, Session } from "./types.ts";
import { createWindow } from "./window.ts";
import { type RejectReason, WIRE_ERRORS } from "../protocol/wire-errors.ts";

/** How long the handshakes opened per address are counted before the count starts again (eviction's tie-break). */
const OPENS_WINDOW_MS = 10_000;
/** Address groups whose opens are counted at once; past it, new groups count as none (a scan of every /64). */
const MAX_OPEN_GROUPS = 10_000;

/**
 * Messages and bytes per instance over any 60 s span; the first drop gets the
 * Error, and the next Error waits at least a minute, however the sender keeps on.
 */
export function withinRate(s: RelayState, inst: Instance, now: number, bytes: number): boolean {
  const messages = inst.messageWindow;
  const volume = inst.byteWindow;
  const countOk = messages === null || messages.fits(now, 1);
  const bytesOk = volume === null || volume.fits(now, bytes);
  if (countOk && bytesOk) {
    messages?.add(1);
    volume?.add(bytes);
    return true;
  }
  inst.rateLimited++;
  inst.rateDropped++;
  s.stats.drops.rate_limit++;
  if (now - inst.rateErrorAt >= RATE_WINDOW_MS) {
    const which = countOk ? `${s.options.rateLimitBytes} bytes` : `${s.options.rateLimit} messages`;
    const earlier = inst.rateDropped - 1;
    s.log.warn(
      "rate_limited",
      `Instance '${inst.name}' exceeded the rate limit (${which} per minute);` +
        ` dropping until it is back under${earlier > 0 ? ` (${earlier} dropped since the last notice)` : ""}`,
      { ...who(inst.conn), reason: "rate_limit", dropped: earlier },
    );
    inst.rateErrorAt = now;
    inst.rateDropped = 0;
    deliver(s, inst.conn, errorFrame(WIRE_ERRORS.rateLimit(inst.name)));
  }
  return false;
}

/** Counts a registration from the connection's address; false past the per-address limit. */
export function registrationAllowed(s: RelayState, conn: Connection, now: number): boolean {
  let window = s.registrationWindows.get(conn.group);
  if (window === undefined) {
    window = createWindow(s.o.maxRegistrationsPerAddress, RATE_WINDOW_MS);
    s.registrationWindows.set(conn.group, window);
  }
  if (!window.fits(now, 1)) return false;
  window.add(1);
  return true;
}

/** Forgets the registration windows that have emptied, and starts counting handshakes opened afresh now and then. */
export function pruneRegistrationWindows(s: RelayState, now: number): void {
  for (const [group, window] of s.registrationWindows)
    if (window.fits(now, 0) && window.used === 0) s.registrationWindows.delete(group);
  if (now - s.opensSince >= OPENS_WINDOW_MS) {
    s.handshakeOpens.clear();
    s.opensSince = now;
  }
}

/**
 * The instance slots, shared out so that one address (a stranger, or one member of one ensemble) cannot hold
 * them all: the relay's, then the session's on this node, then the address's. Null: there is room.
 */
export function capacityRefusal(
  s: RelayState,
  conn: Connection,
  session: Session | undefined,
): { message: string; why: RejectReason } | null {
  const o = s.o;
  if (s.instanceCount >= o.maxInstances) return { message: WIRE_ERRORS.maxInstances(o.maxInstances), why: "capacity" };
  let local = 0;
  if (session) for (const m of session.instances) if (m.conn.state !== "remote") local++;
  if (local >= o.maxInstancesPerSession)
    return { message: WIRE_ERRORS.sessionFull(o.maxInstancesPerSession), why: "session_full" };
  if ((s.instancesByGroup.get(conn.group) ?? 0) >= o.maxInstancesPerAddress)
    return { message: WIRE_ERRORS.addressFull(o.maxInstancesPerAddress), why: "address_full" };
  return null;
}

/**
 * The caps on connections still handshaking, for one just opened: past its address's
 * cap it is cut (false); past the relay-wide cap another handshake goes instead
 * (eviction.ts: from the address holding the most, sparing the youngest).
 */
export function admitHandshake(s: RelayState, conn: Connection): boolean {
  const peer = conn.peer;
  if (s.handshakeOpens.size < MAX_OPEN_GROUPS || s.handshakeOpens.has(conn.group))
    s.handshakeOpens.set(conn.group, (s.handshakeOpens.get(conn.group) ?? 0) + 1);
  if ((s.handshakesByGroup.get(conn.group)?.length ?? 0) > s.o.maxHandshakesPerAddress) {
    logRepeated(
      s,
      "warn",
      "connection_refused",
      conn,
      `Connection from ${peer.address} refused: too many of its connections still handshaking`,
      {
        ip: peer.address,
        reason: "handshake_limit",
      },
    );
    s.stats.connectionsRefused++;
    cut(s, conn, "handshake_limit", false);
    return false;
  }
  // Relay-wide, an older handshake goes, not the newest: an instance registers within
  // a round trip, so a player connecting during a flood still gets in. Which one:
  // from the address holding the most (then connecting the most), so a flood from
  // many addresses evicts itself, sparing handshakes younger than a round trip or two
  // (eviction.ts).
  if (s.handshaking > s.o.maxHandshakes) {
    const old = pickHandshakeVictim(
      s.handshakesByGroup,
      conn,
      s.clock.now(),
      (c) => c.state === "handshake",
      (g) => s.handshakeOpens.get(g) ?? 0,
    );
    const going = old ?? conn;
    logRepeated(
      s,
      "warn",
      "connection_refused",
      going,
      old !== null
        ? `Connection from ${old.peer.address} closed: the relay's handshake slots are full` +
            ` and its address holds the most of them`
        : `Connection from ${conn.peer.address} refused: the relay's handshake slots are full`,
      {
        ip: going.peer.address,
        reason: "handshake_limit",
      },
    );
    if (old === null) s.stats.connectionsRefused++;
    cut(s, going, "handshake_limit", false);
    if (old === null) return false;
  }
  return true;
}
