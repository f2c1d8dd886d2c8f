/**
 * The relay's limits (docs/protocol.md, "Limits"): messages and
 * bytes per instance over any 60 s, registrations per address, and the caps on
 * connections still handshaking. Time comes from the state's clock.
 */
import { cut, deliver } from "./connection.ts";
import { errorFrame, logRepeated, RATE_WINDOW_MS, type RelayState, who } from "./state.ts";
import type { Connection, Instance } from "./types.ts";
import { createWindow } from "./window.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

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

/** Forgets the registration windows that have emptied. */
export function pruneRegistrationWindows(s: RelayState, now: number): void {
  for (const [group, window] of s.registrationWindows)
    if (window.fits(now, 0) && window.used === 0) s.registrationWindows.delete(group);
}

/**
 * The caps on connections still handshaking, for one just opened: past its address's
 * cap it is cut (false); past the relay-wide cap the oldest handshake goes instead.
 */
export function admitHandshake(s: RelayState, conn: Connection): boolean {
  const peer = conn.peer;
  if ((s.handshakesByGroup.get(conn.group) ?? 0) > s.o.maxHandshakesPerAddress) {
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
  // Relay-wide, the oldest handshake goes, not the newest: an instance registers
  // within a round trip, so whoever has sat the longest without registering is the
  // likeliest stranger, and a player connecting during a flood still gets in.
  if (s.handshaking > s.o.maxHandshakes) {
    for (const old of s.connections) {
      if (old.state !== "handshake") continue;
      logRepeated(
        s,
        "warn",
        "connection_refused",
        old,
        `Connection from ${old.peer.address} closed: the relay's handshake slots are full and it waited the longest`,
        {
          ip: old.peer.address,
          reason: "handshake_limit",
        },
      );
      cut(s, old, "handshake_limit", false);
      break;
    }
  }
  return true;
}
