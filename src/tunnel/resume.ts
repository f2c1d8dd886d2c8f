/**
 * What the tunnel keeps to resume its player's session (docs/resume.md), with
 * no sockets: the secret and window the relay gave, where the player stands in
 * each of the session's streams (cursor: what was passed on to Sova; own: its
 * edits the relay confirmed), and the player's edits not yet confirmed, held in
 * order (those sent and those made while the connection is down), bounded in
 * bytes. carry.ts drives it.
 */
import {
  type CursorEntry,
  encodeFrame,
  encodeMessage,
  type MemberEntry,
  type Message,
  type RegisterInstance,
  type Variant,
} from "../protocol/messages.ts";

type Position = Map<string, bigint>;

export interface ResumeState {
  /** The relay agreed to resume this player (it answered with Resumable). */
  readonly enabled: boolean;
  readonly windowMs: number;
  /** Bytes of edits held, sent or not, until the relay confirms them. */
  readonly heldBytes: number;
  readonly heldEdits: number;
  /** Edits confirmed since registration. */
  readonly acked: number;
  /** The relay's answer after a registration (`fresh`) or a resumption: false when it contradicts what is held. */
  resumable(msg: Variant<"Resumable">, fresh: boolean): boolean;
  /** The next StateBroadcast is this entry. */
  mark(msg: Variant<"Mark">): void;
  /** A StateBroadcast was passed on to Sova. */
  passedOn(): void;
  /** The relay consumed the oldest held edit. */
  acknowledged(msg: Variant<"Acked">): void;
  /** Holds one of Sova's edits (copied); false when that passes the bound. */
  hold(body: Uint8Array): boolean;
  /** Held edits not yet sent on the current connection, marked sent. */
  unsent(): Uint8Array[];
  /** The connection is gone: every held edit goes again on the next one. */
  lost(): void;
  /** The ResumeInstance asking for this player back. */
  request(registration: RegisterInstance, id: Uint8Array): Uint8Array;
  /** An Ack body when entries were passed on since the last one (or `always`), else null. */
  ackDue(always?: boolean): Uint8Array | null;
}

function _entries(p: Position): CursorEntry[] {
  return [...p];
}

export function createResumeState(maxHeldBytes: number): ResumeState {
  let enabled = false;
  let windowMs = 0;
  let secret: Uint8Array = new Uint8Array(0);
  let gen = 0n;
  const cursor: Position = new Map();
  const own: Position = new Map();
  let pending: Variant<"Mark"> | null = null;
  let passedN = 0n;
  let ackedN = 0n;
  let acked = 0;
  // The held edits, oldest first; the first `sent` of them went out on the current connection.
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  let sent = 0;

  /** No edit awaits confirmation: none of ours lies past the cursor, so the relay need look no further back. */
  function settled(): void {
    for (const [origin, q] of cursor) if (q > (own.get(origin) ?? 0n)) own.set(origin, q);
  }

  function dropOldest(count: number): void {
    for (let i = 0; i < count; i++) heldBytes -= held[i]!.length;
    held = held.slice(count);
    sent = Math.max(0, sent - count);
    acked += count;
  }

  return {
    get enabled() {
      return enabled;
    },
    get windowMs() {
      return windowMs;
    },
    get heldBytes() {
      return heldBytes;
    },
    get heldEdits() {
      return held.length;
    },
    get acked() {
      return acked;
    },
    resumable(msg, fresh) {
      secret = msg.secret;
      windowMs = Number(msg.window_ms);
      gen = msg.generation;
      enabled = true;
      // After a resumption the relay's cursor already counts the gap it just replayed: ours stays. At registration
      // it is where this player starts, and no edit of its own came before.
      if (fresh)
        for (const [origin, q] of msg.cursor) {
          cursor.set(origin, q);
          own.set(origin, q);
        }
      const confirmed = Number(msg.consumed) - acked;
      if (confirmed < 0 || confirmed > held.length) return false;
      dropOldest(confirmed);
      sent = 0;
      return true;
    },
    mark(msg) {
      pending = msg;
    },
    passedOn() {
      if (pending === null) return;
      if (pending.q > (cursor.get(pending.origin) ?? 0n)) cursor.set(pending.origin, pending.q);
      if (pending.n > passedN) passedN = pending.n;
      pending = null;
      if (held.length === 0) settled();
    },
    acknowledged(msg) {
      if (held.length > 0) dropOldest(1);
      else acked++;
      if (msg.q > 0n) {
        if (msg.q > (own.get(msg.origin) ?? 0n)) own.set(msg.origin, msg.q);
        if (msg.q > (cursor.get(msg.origin) ?? 0n)) cursor.set(msg.origin, msg.q);
      }
      if (held.length === 0) settled();
    },
    hold(body) {
      if (heldBytes + body.length > maxHeldBytes) return false;
      held.push(body.slice());
      heldBytes += body.length;
      return true;
    },
    unsent() {
      const out = held.slice(sent);
      sent = held.length;
      return out;
    },
    lost() {
      sent = 0;
      pending = null;
      // Entry numbers are the relay's own: another relay (or the same after a restart) numbers afresh.
      passedN = ackedN = 0n;
    },
    request(registration, id) {
      return encodeMessage({
        type: "ResumeInstance",
        instance_name: registration.instance_name,
        version: registration.version,
        session_token: registration.session_token,
        capabilities: registration.capabilities,
        instance_id: id,
        secret,
        cursor: _entries(cursor),
        own: _entries(own),
        acked: BigInt(acked),
        generation: gen,
      });
    },
    ackDue(always = false) {
      if (passedN <= ackedN && !always) return null;
      ackedN = passedN;
      return encodeMessage({ type: "Ack", n: passedN });
    },
  };
}

/**
 * Who Sova was told is in the session, kept from the frames it was passed (the tunnel asks for presence to see
 * joins), so that after a gap it can be told who left, and who joined if it asked, as it would have been.
 */
export interface SeenMembers {
  /** A frame passed on (or, for InstanceConnected, seen) on its way to Sova. */
  note(msg: Message): void;
  /** The members now: the notices Sova missed, as frames, oldest knowledge first. */
  catchUp(members: readonly MemberEntry[], presence: boolean): Uint8Array[];
}

const key = (id: Uint8Array) => Buffer.from(id).toString("hex");

export function createSeenMembers(): SeenMembers {
  const known = new Map<string, MemberEntry>();
  return {
    note(msg) {
      if (msg.type === "RegistrationResponse")
        for (const i of msg.current_instances) known.set(key(i.id), [i.id, i.name]);
      else if (msg.type === "InstanceConnected") known.set(key(msg.instance_id), [msg.instance_id, msg.instance_name]);
      else if (msg.type === "InstanceDisconnected") known.delete(key(msg.instance_id));
    },
    catchUp(members, presence) {
      const now = new Map(members.map((m) => [key(m[0]), m]));
      const out: Uint8Array[] = [];
      for (const [k, [id, name]] of known) {
        if (now.has(k)) continue;
        known.delete(k);
        out.push(encodeFrame({ type: "InstanceDisconnected", instance_id: id, instance_name: name }));
      }
      for (const [k, m] of now) {
        if (known.has(k)) continue;
        known.set(k, m);
        if (presence) out.push(encodeFrame({ type: "InstanceConnected", instance_id: m[0], instance_name: m[1] }));
      }
      return out;
    },
  };
}
