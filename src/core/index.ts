/**
 * The relay itself: one in-process map of sessions and instances, and what
 * happens to each frame (docs/protocol.md, "Connection flow" and "Limits"). It never
 * touches a socket: a connection is a `Peer` it can send to and close, so all of
 * this runs in unit tests as it runs behind Bun.listen.
 *
 * The parts, each a module sharing one state object (state.ts): registration.ts
 * (the first frame), routing.ts (StateUpdate fan-out), turn.ts (a turn's broadcasts
 * queued to each member at once), limits.ts (rates and caps),
 * connection.ts (sending and ending), lifecycle.ts (what the transport drives),
 * resume.ts and restore.ts (members that may resume: docs/resume.md).
 */
import type { Logger } from "../lib/log.ts";
import { answerLoneHeader, closeAll, closed, cutFor, nudge, oversized, open, receive, tick } from "./lifecycle.ts";
import { createRemoteMembers } from "./remote.ts";
import { resumeBufferBytes } from "./resume.ts";
import { takeTurns } from "./routing.ts";
import { createState } from "./state.ts";
import type { Relay, RelayOptions } from "./types.ts";

export { KNOWN_CAPABILITIES } from "./registration.ts";
export { inertPeer } from "./remote.ts";
export { RATE_WINDOW_MS } from "./state.ts";
export type {
  Clock,
  Connection,
  ConnectionState,
  Instance,
  Peer,
  Relay,
  RelayOptions,
  Session,
  WatchTap,
} from "./types.ts";

export function createRelay(options: RelayOptions, log: Logger): Relay {
  const s = createState(options, log);
  return {
    options,
    stats: s.stats,
    sessions: s.sessions,
    connections: s.connections,
    get instanceCount() {
      return s.instanceCount;
    },
    get handshaking() {
      return s.handshaking;
    },
    get shuttingDown() {
      return s.shuttingDown;
    },
    get parked() {
      return s.parked.size;
    },
    get resumeBufferBytes() {
      return resumeBufferBytes(s);
    },
    open: (peer) => open(s, peer),
    receive: (conn, body) => receive(s, conn, body),
    oversized: (conn, length) => oversized(s, conn, length),
    closed: (conn, reason) => closed(s, conn, reason),
    cut: (conn, reason) => cutFor(s, conn, reason),
    tick: (now = s.clock.now()) => tick(s, now),
    nudge: (now = s.clock.now()) => nudge(s, now),
    answerLoneHeader: (conn) => answerLoneHeader(s, conn),
    beginShutdown() {
      // What was read before the signal is relayed: the shutdown then waits for it to be sent.
      takeTurns(s);
      s.shuttingDown = true;
    },
    closeAll: () => closeAll(s),
    remote: createRemoteMembers(s),
  };
}
