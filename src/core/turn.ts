/**
 * A session's broadcasts of one turn of the event loop, queued to each member at its end in one piece.
 *
 * When a hundred players edit on the same beat, the frames of one turn went to each member one by one:
 * 200 x 199 queue operations, each touching that member's records, a quarter of the relay's own time at
 * k = 200 (docs/performance.md). Here a turn's frames are joined once per session, in chunks of up to
 * 64 KiB, and each member is given views of those without its own frames: a few per member and turn.
 *
 * Order is kept: a member gets the turn's frames in the order they came, and anything else sent to a member
 * (a Pong, an Error, a notice, a close) first queues the turn so far (connection.ts calls `takeTurn`).
 * A turn holds the members its session had when the frames came: a change of members starts a new one, so
 * a newcomer does not get what came before it (its history has it) and one that left gets nothing more.
 * Members that may resume are not in it: their frames are numbered one by one (resume.ts).
 */
import type { RelayState } from "./state.ts";
import { observe } from "./stats.ts";
import type { Connection, Instance, Session } from "./types.ts";

/**
 * Keeps `frame` for the members of `session` but `sender`, to be queued when the turn ends (or sooner, see
 * above); `members`: the session's members now. False: a turn of another set of members was open, and is to
 * be taken first.
 */
export function addToTurn(
  s: RelayState,
  session: Session,
  members: readonly Instance[],
  sender: Instance | null,
  frame: Uint8Array,
  arrived: number,
  now: number,
): boolean {
  let turn = session.turn;
  if (turn !== null && turn.members !== members) return false;
  if (turn === null) {
    turn = { members, frames: [], senders: [], arrived: [], now };
    session.turn = turn;
    s.turns.push(session);
  }
  turn.frames.push(frame);
  turn.senders.push(sender);
  turn.arrived.push(arrived);
  return true;
}

/**
 * A view holds whole frames, up to this many bytes (one frame alone may be more): what the outbox writes at
 * once (lib/outbox.ts), and what the WebSocket carrier may send as messages from one write before it can stop.
 */
const VIEW_BYTES = 64 * 1024;

/** Consecutive frames of a turn joined into one buffer of at most VIEW_BYTES (or one bigger frame, as it is). */
interface _Chunk {
  readonly buf: Uint8Array;
  /** Its frames: the turn's `first` to `end` (exclusive). */
  readonly first: number;
  readonly end: number;
  /** Where each of them starts in `buf`, and one more: the end. */
  readonly at: number[];
}

function _chunk(frames: readonly Uint8Array[], first: number, end: number, bytes: number): _Chunk {
  if (end - first === 1) return { buf: frames[first]!, first, end, at: [0, bytes] };
  const buf = new Uint8Array(bytes);
  const at: number[] = [];
  let offset = 0;
  for (let i = first; i < end; i++) {
    at.push(offset);
    buf.set(frames[i]!, offset);
    offset += frames[i]!.length;
  }
  at.push(offset);
  return { buf, first, end, at };
}

/**
 * A frame past this size is not copied into a chunk: it stays the one buffer the history and every member
 * share (a copy would double what a backlog of big frames holds), and is queued as it is.
 */
const JOIN_BYTES = 4096;

/**
 * The turn's frames in chunks. Not one buffer for all: a view of it kept by a member that stopped reading would
 * keep all of it, and an outbox counts what it holds; a chunk is counted whole by each member queueing a part.
 */
function _join(frames: readonly Uint8Array[]): _Chunk[] {
  const chunks: _Chunk[] = [];
  let first = 0;
  let bytes = 0;
  for (let i = 0; i < frames.length; i++) {
    const length = frames[i]!.length;
    const alone = length > JOIN_BYTES;
    if (i > first && (alone || bytes + length > VIEW_BYTES || frames[i - 1]!.length > JOIN_BYTES)) {
      chunks.push(_chunk(frames, first, i, bytes));
      first = i;
      bytes = 0;
    }
    bytes += length;
  }
  chunks.push(_chunk(frames, first, frames.length, bytes));
  return chunks;
}

/** Which frames each sender of the turn sent (most send one). */
function _ownFrames(senders: readonly (Instance | null)[]): Map<Instance, number[]> {
  const own = new Map<Instance, number[]>();
  for (let i = 0; i < senders.length; i++) {
    const sender = senders[i];
    if (!sender) continue;
    const list = own.get(sender);
    if (list) list.push(i);
    else own.set(sender, [i]);
  }
  return own;
}

/**
 * Queues the turn but the frames at `skip` (ascending) to `member`: per chunk, one view per run of frames
 * between its own. The last view of a chunk is counted at the whole chunk, which the views keep alive until
 * that one is sent (an outbox sends in order); the ones before it at nothing. A chunk mostly of the member's own
 * frames is not kept alive for it: its runs are copied, each counted at its length.
 */
function _queueRuns(member: Instance, chunks: readonly _Chunk[], skip: readonly number[]): boolean {
  const peer = member.conn.peer;
  let p = 0;
  for (const c of chunks) {
    let q = p;
    let unsent = 0;
    for (; q < skip.length && skip[q]! < c.end; q++)
      unsent += c.at[skip[q]! - c.first + 1]! - c.at[skip[q]! - c.first]!;
    const copy = unsent * 2 > c.buf.length;
    for (let from = c.first; from < c.end; ) {
      if (p < q && skip[p] === from) {
        p++;
        from++;
        continue;
      }
      let to = from + 1;
      while (to < c.end && !(p < q && skip[p] === to)) to++;
      const view = c.buf.subarray(c.at[from - c.first]!, c.at[to - c.first]!);
      // The last view of the chunk: all that follows in it is the member's own (skip[p..q), all at or past `to`).
      const last = q - p === c.end - to;
      if (copy) {
        const own = view.slice();
        if (!peer.send(own, false, false, own.length)) return false;
      } else if (!peer.send(view, false, false, last ? c.buf.length : 0)) return false;
      from = to;
    }
  }
  return true;
}

/** Whether `conn`'s session holds frames of this turn for it: they are on their way, and nudge it. */
export function awaitsTurn(conn: Connection): boolean {
  const inst = conn.instance;
  const turn = inst?.session.turn;
  if (!turn || inst!.resume !== null) return false;
  // A member that joined after the turn began gets none of it.
  if (turn.members !== inst!.session.instances && !turn.members.includes(inst!)) return false;
  for (const sender of turn.senders) if (sender !== inst) return true;
  return false;
}

/** Queues `session`'s turn to its members now; returns the connections that could not take it (to be cut). */
export function takeTurn(s: RelayState, session: Session): Connection[] | null {
  const turn = session.turn;
  if (turn === null) return null;
  session.turn = null;
  // Joined for the first member that takes the turn: members may all have gone meanwhile.
  let chunks: _Chunk[] | null = null;
  const count = turn.frames.length;
  // Most turns of most sessions hold one frame: no map for that.
  const own = count > 1 ? _ownFrames(turn.senders) : null;
  const single = turn.senders[0];
  let slow: Connection[] | null = null;
  for (const member of turn.members) {
    if (member.conn.state !== "registered" || member.resume !== null) continue;
    const skip = (own !== null ? own.get(member) : member === single ? FIRST : undefined) ?? NONE;
    if (skip.length === count) continue;
    chunks ??= _join(turn.frames);
    if (_queueRuns(member, chunks, skip)) {
      member.conn.lastSent = turn.now;
      member.messagesOut += count - skip.length;
      s.stats.deliveries += count - skip.length;
    } else if (slow === null) slow = [member.conn];
    else slow.push(member.conn);
  }
  const done = s.clock.monotonic();
  for (const at of turn.arrived) if (at >= 0) observe(s.stats.relayLatency, (done - at) / 1000);
  return slow;
}

const NONE: readonly number[] = [];
const FIRST: readonly number[] = [0];
