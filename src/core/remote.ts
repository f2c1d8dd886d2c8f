/**
 * The relay's side of a cluster (src/core/link.ts): only reached when
 * `options.link` is set. A name is claimed across the cluster before the
 * RegistrationResponse goes out (frames that arrive meanwhile are held, in
 * order, within a bound); other nodes' members are kept as instances whose
 * connection is never sent to, so rosters, names and presence work as for local
 * ones; frames from other nodes reach the local members of their session.
 */
import { parse as parseUuid } from "uuid";
import { encodeFrame, instanceInfoHead, systemTimeFromMillis } from "../protocol/messages.ts";
import { cutSlowConsumer, tell } from "./connection.ts";
import type { RemoteMember, RemoteMembers } from "./link.ts";
import { nameKey } from "./names.ts";
import { openSession } from "./registration.ts";
import { rosterJoin } from "./roster.ts";
import type { RelayState } from "./state.ts";
import type { Connection, Instance, Peer } from "./types.ts";

function _remoteConn(node: string): Connection {
  const peer: Peer = {
    address: `node ${node}`,
    port: 0,
    pendingBytes: 0,
    frontBytes: 0,
    send: () => true,
    close() {},
    closeWith() {},
    terminate() {},
    setFrameLimit() {},
  };
  return {
    id: 0,
    peer,
    openedAt: 0,
    group: `node ${node}`,
    lastSeen: 0,
    lastSent: 0,
    replayDeadline: 0,
    state: "remote",
    instance: null,
  };
}

export function createRemoteMembers(s: RelayState): RemoteMembers {
  const remoteConns = new Map<string, Connection>();
  return {
    joined(m: RemoteMember) {
      if (s.remoteById.has(m.id)) return;
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
      let conn = remoteConns.get(m.node);
      if (!conn) {
        conn = _remoteConn(m.node);
        remoteConns.set(m.node, conn);
      }
      const id = parseUuid(m.id);
      const inst: Instance = {
        id,
        idText: m.id,
        name: m.name,
        nameKey: key,
        version: m.version,
        session,
        conn,
        connectedAt: m.connectedAt,
        capabilities: new Set(),
        prefix: new Uint8Array(0),
        infoHead: instanceInfoHead({
          id,
          name: m.name,
          version: m.version,
          connected_at: systemTimeFromMillis(m.connectedAt),
        }),
        lastActivity: m.lastActivity,
        // Rate limits stay on the node that owns the connection.
        messageWindow: null,
        byteWindow: null,
        rateDropped: 0,
        rateErrorAt: 0,
        messagesIn: 0,
        messagesOut: 0,
        rateLimited: 0,
        dropped: 0,
      };
      s.remoteById.set(m.id, inst);
      const others = session.instances;
      session.instances = [...others, inst];
      rosterJoin(session.roster, others, session.instances, inst);
      session.names.add(key);
      if (session.presenceWatchers > 0) {
        tell(s, others, encodeFrame({ type: "InstanceConnected", instance_id: id, instance_name: m.name }), true);
      }
    },
    left(sessionId, idText) {
      const inst = s.remoteById.get(idText);
      if (!inst) return;
      s.remoteById.delete(idText);
      const session = inst.session;
      session.instances = session.instances.filter((i) => i !== inst);
      if (!session.instances.some((i) => i.nameKey === inst.nameKey)) session.names.delete(inst.nameKey);
      if (session.instances.length === 0 && s.sessions.get(sessionId) === session) s.sessions.delete(sessionId);
      tell(
        s,
        session.instances,
        encodeFrame({ type: "InstanceDisconnected", instance_id: inst.id, instance_name: inst.name }),
      );
    },
    activity(_sessionId, idText, at) {
      const inst = s.remoteById.get(idText);
      if (inst) inst.lastActivity = at;
    },
    frame(sessionId, frame) {
      if (s.shuttingDown) return;
      const now = s.clock.now();
      if (s.history?.enabled) s.history.append(sessionId, frame, now);
      const session = s.sessions.get(sessionId);
      if (!session) return;
      let slow: Connection[] | null = null;
      for (const other of session.instances) {
        if (other.conn.state !== "registered") continue;
        if (other.conn.peer.send(frame)) {
          other.conn.lastSent = now;
          other.messagesOut++;
          s.stats.deliveries++;
        } else {
          slow ??= [];
          slow.push(other.conn);
        }
      }
      if (slow !== null) for (const conn of slow) cutSlowConsumer(s, conn);
    },
    locals() {
      const out: Instance[] = [];
      for (const conn of s.connections) if (conn.state === "registered" && conn.instance) out.push(conn.instance);
      return out;
    },
  };
}
