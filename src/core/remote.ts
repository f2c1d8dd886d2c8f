/**
 * The relay's side of a cluster (src/core/link.ts): only reached when
 * `options.link` is set. A name is claimed across the cluster before the
 * RegistrationResponse goes out (frames that arrive meanwhile are held, in
 * order, within a bound); other nodes' members are kept as instances whose
 * connection is never sent to, so rosters, names and presence work as for local
 * ones; frames from other nodes reach the local members of their session.
 */
import { encodeFrame } from "../protocol/messages.ts";
import { dropResumer, tell, uncountInstance } from "./connection.ts";
import type { Departure, RemoteMember, RemoteMembers } from "./link.ts";
import { type NameKey, nameKey } from "./names.ts";
import { hearDeparture, hearJoin } from "./notices.ts";
import { newInstance, openSession } from "./registration.ts";
import { addResumer, newResumption, parkRemote, record, resumeOn } from "./resume.ts";
import { fanOut } from "./routing.ts";
import { rosterJoin } from "./roster.ts";
import type { RelayState } from "./state.ts";
import type { Connection, Instance, Peer, Session } from "./types.ts";

/** A peer that takes every frame and holds nothing: an instance of another node, a sample for the docs. */
export function inertPeer(address: string, port = 0): Peer {
  return {
    address,
    port,
    pendingBytes: 0,
    frontBytes: 0,
    send: () => true,
    close() {},
    closeWith() {},
    terminate() {},
    setFrameLimit() {},
  };
}

function _remoteConn(node: string): Connection {
  const peer = inertPeer(`node ${node}`);
  return {
    id: 0,
    peer,
    openedAt: 0,
    group: `node ${node}`,
    lastSeen: 0,
    lastSent: 0,
    replayDeadline: 0,
    replayMark: 0,
    state: "remote",
    instance: null,
  };
}

/** Another node's member leaves this relay's view: InstanceDisconnected to the local members. */
export function removeRemote(s: RelayState, inst: Instance): void {
  s.remoteById.delete(inst.idText);
  dropResumer(s, inst);
  const session = inst.session;
  session.instances = session.instances.filter((i) => i !== inst);
  if (!session.instances.some((i) => i.nameKey === inst.nameKey)) session.names.delete(inst.nameKey);
  if (session.instances.length === 0 && s.sessions.get(session.id) === session) s.sessions.delete(session.id);
  tell(
    s,
    hearDeparture(s, session, inst),
    encodeFrame({ type: "InstanceDisconnected", instance_id: inst.id, instance_name: inst.name }),
  );
}

/** Another node announced a member this relay already holds: it resumed there (a higher generation wins). */
function _moved(s: RelayState, known: Instance, m: RemoteMember, conn: Connection): void {
  const gen = m.gen ?? 0;
  if (known.resume === null || gen <= known.resume.gen) return;
  known.resume.gen = gen;
  if (known.node === null) return _movedAway(s, known, m, conn);
  // Another node's record changes hands without a word to anyone.
  s.parked.delete(known);
  known.resume.parkedUntil = 0;
  known.node = m.node;
  known.conn = conn;
}

/** This relay's own member resumed on another node: its stale connection goes, and it stays as that node's. */
function _movedAway(s: RelayState, local: Instance, m: RemoteMember, conn: Connection): void {
  const old = local.conn;
  s.log.info(
    "resume_moved",
    `Instance '${local.name}' resumed on node ${m.node}; its connection here from ${old.peer.address} is retired`,
    { instance: local.name, id: local.idText, session: local.session.id, node: m.node },
  );
  if (old.state === "registered") {
    old.state = "closed";
    s.connections.delete(old);
    old.peer.terminate();
  }
  s.parked.delete(local);
  local.resume!.parkedUntil = 0;
  s.instanceCount--;
  uncountInstance(s, local);
  if (local.capabilities.has("presence")) local.session.presenceWatchers--;
  // Our claim on the name was taken over: forget it without a word to the cluster.
  s.options.link?.release(local.session.id, local.nameKey);
  local.node = m.node;
  local.conn = conn;
  s.remoteById.set(local.idText, local);
}

/**
 * Another node's member, told of as local ones are (notices.ts), so churn on another node is
 * bounded here too. Its frames come without their sender, so a member that only heard its
 * updates may miss its leaving in a storm.
 */
function _record(s: RelayState, m: RemoteMember, session: Session, key: NameKey, conn: Connection): Instance {
  return newInstance(s, {
    idText: m.id,
    name: m.name,
    nameKey: key,
    version: m.version,
    session,
    conn,
    connectedAt: m.connectedAt,
    capabilities: new Set(),
    prefix: new Uint8Array(0),
    lastActivity: m.lastActivity,
    // Rate limits stay on the node that owns the connection.
    messageWindow: null,
    byteWindow: null,
    resume: m.resumable && resumeOn(s) ? newResumption(m.gen ?? 0) : null,
    node: m.node,
  });
}

export function createRemoteMembers(s: RelayState): RemoteMembers {
  const remoteConns = new Map<string, Connection>();
  const connOf = (node: string) => {
    let conn = remoteConns.get(node);
    if (!conn) {
      conn = _remoteConn(node);
      remoteConns.set(node, conn);
    }
    return conn;
  };
  return {
    joined(m: RemoteMember) {
      const known = s.remoteById.get(m.id) ?? s.sessions.get(m.session)?.instances.find((i) => i.idText === m.id);
      if (known) return _moved(s, known, m, connOf(m.node));
      const session = s.sessions.get(m.session) ?? openSession(s, m.session, m.connectedAt);
      // As the owning node keyed (and claimed) it.
      const key = nameKey(m.name);
      if (session.names.has(key)) {
        s.log.warn(
          "cluster_name_conflict",
          `Instance name '${m.name}' is in use on this node and on node ${m.node}` +
            ` (claimed while the cluster was unreachable)`,
          {
            session: m.session,
            instance: m.name,
            node: m.node,
          },
        );
      }
      const inst = _record(s, m, session, key, connOf(m.node));
      s.remoteById.set(m.id, inst);
      const others = session.instances;
      session.instances = [...others, inst];
      rosterJoin(session.roster, others, session.instances, inst);
      session.names.add(key);
      if (inst.resume) addResumer(session);
      const watchers = hearJoin(s, session, inst, others);
      if (watchers.length > 0)
        tell(s, watchers, encodeFrame({ type: "InstanceConnected", instance_id: inst.id, instance_name: m.name }));
    },
    left(_sessionId, idText, how?: Departure) {
      const inst = s.remoteById.get(idText);
      if (!inst) return;
      // Its record moved to another node since: that node's word counts now.
      if (how && inst.node !== how.node) return;
      if (how?.down && inst.resume && resumeOn(s)) return parkRemote(s, inst, s.clock.now());
      removeRemote(s, inst);
    },
    activity(_sessionId, idText, at) {
      const inst = s.remoteById.get(idText);
      if (inst) inst.lastActivity = at;
    },
    frame(sessionId, frame, origin, q) {
      if (s.shuttingDown) return;
      const now = s.clock.now();
      if (s.history?.enabled) s.history.append(sessionId, frame, now);
      if (s.options.watch?.wants(sessionId)) s.options.watch.frame(sessionId, frame, now);
      const session = s.sessions.get(sessionId);
      if (!session) return;
      fanOut(s, session, session.instances, null, record(s, session, origin, q, frame, now, null), frame, now);
    },
    locals() {
      const out: Instance[] = [];
      for (const conn of s.connections) if (conn.state === "registered" && conn.instance) out.push(conn.instance);
      // Parked members stay announced: the other nodes keep them too.
      for (const inst of s.parked) if (inst.node === null) out.push(inst);
      return out;
    },
  };
}
