/**
 * A connection's outbound queue. `socket.write` may take only part of a buffer
 * (or none): what it leaves is kept here and sent on `drain`, so nothing is lost
 * silently. Frames queued during one turn of the event loop (one socket read
 * can produce dozens of broadcasts to the same peer) leave in a single write.
 *
 * Memory is counted at what it costs. A small frame made for this peer alone is
 * copied into a chunk this outbox owns, so a queue of ten thousand 49-byte replies
 * holds about 490 KB, not ten thousand buffers of a few hundred bytes each
 * (measured: a queued reply held as its own buffer cost ~830 B of RSS while it
 * counted 49 B); a chunk counts its whole capacity. Otherwise frames are queued by
 * reference: broadcasts are one buffer shared by every recipient, counted once per
 * recipient (more than they cost, never less).
 */
export interface ByteSink {
  /** Bytes taken, possibly fewer than offered; -1 when the socket is gone. */
  write(data: Uint8Array): number;
  end(): void;
}

/** Bytes held by every outbox together: one per server, shared by its connections. */
export interface PendingBudget {
  used: number;
  readonly limit: number;
  /** True from passing the limit until back under half of it. */
  over: boolean;
  /** Told when `over` turns on: the server cuts the connections furthest behind. */
  onPressure?: (over: boolean) => void;
}

export function createBudget(limit: number, onPressure?: (over: boolean) => void): PendingBudget {
  return { used: 0, limit, over: false, onPressure };
}

function charge(budget: PendingBudget, delta: number): void {
  budget.used += delta;
  if (!budget.over && budget.used > budget.limit) {
    budget.over = true;
    budget.onPressure?.(true);
  } else if (budget.over && budget.used < budget.limit / 2) {
    budget.over = false;
    budget.onPressure?.(false);
  }
}

export interface OutboxOptions {
  /** Bytes held for live frames past which `enqueue` refuses (the slow-consumer bound). */
  maxPendingBytes: number;
  /**
   * The relay's memory bound. While all outboxes together hold more than its
   * limit, an outbox already holding half its own bound refuses more, and the
   * server cuts the connections holding the most: the peers furthest behind go
   * first; peers that keep up hold next to nothing and are untouched.
   */
  budget?: PendingBudget;
  /** Small frames are merged into writes of up to this size. */
  batchBytes?: number;
  /** Called each time the queue empties (shutdown waits on it). */
  onEmpty?: () => void;
}

export interface Outbox {
  /**
   * Queues a whole frame; false (frame not queued) once the bound would be passed.
   * `front` frames (a newcomer's RegistrationResponse and session history) go out
   * before any live frame, are never refused and count neither against the bound
   * nor the budget: their bytes belong to the session's roster and history, which
   * are bounded on their own; the relay cuts a newcomer that does not take them in time.
   * `own` frames (made for this peer alone) are copied into the outbox's chunks.
   * `cost`: what a shared live frame holds in memory when that is more than its length (a view
   * of a bigger buffer keeps all of it); counted against the bound and the budget.
   */
  enqueue(frame: Uint8Array, front?: boolean, own?: boolean, cost?: number): boolean;
  /** Sends what the socket will take now; call from the socket's `drain`. */
  flush(): void;
  /** Flush, then end the socket once everything queued has been taken. */
  endAfterFlush(): void;
  /**
   * The last word: drops every frame that has not started to go out (a frame
   * already partly written is finished first, so the peer's stream stays whole),
   * queues `last`, and ends once it is taken.
   */
  endWith(last: Uint8Array): void;
  /** Forget everything queued (the socket is gone or being cut). */
  clear(): void;
  /** Bytes queued and not yet taken by the socket. */
  readonly pendingBytes: number;
  /** Memory those bytes hold (chunk capacities, shared frames once per peer). */
  readonly heldBytes: number;
  /** Bytes of front frames (registration response, history) not yet taken. */
  readonly frontBytes: number;
  /** Memory held for live frames: what the bound and the relay-wide budget count. */
  readonly liveBytes: number;
  /** When the socket last took bytes (ms, Date.now()); a peer that stopped reading stops moving it. */
  readonly lastProgress: number;
}

const DEFAULT_BATCH = 64 * 1024;
/**
 * A frame made for one peer (`own`: a reply, a notice) up to this size is copied into
 * the outbox's own chunks. Shared frames (a broadcast is one buffer for every recipient)
 * never are: copying those too measured 246 MB peak RSS instead of 100 MB under overload.
 */
const SMALL_FRAME = 4096;
const MIN_CHUNK = 128;

/**
 * Merged writes go through one area shared by every outbox: a write is synchronous
 * and the kernel has copied what it took when it returns, so a fresh buffer per
 * write (the hot path's biggest allocation) is not needed.
 */
let mergeBuffer = new Uint8Array(0);

function mergeArea(size: number): Uint8Array {
  if (mergeBuffer.length < size) mergeBuffer = new Uint8Array(size);
  return mergeBuffer;
}

let dirty: _Outbox[] = [];
let flushScheduled = false;
const turnEnd: Array<() => void> = [];

function flushDirty(): void {
  // What was deferred to the end of the turn queues its frames first, so they leave in this same flush
  // (still scheduled meanwhile: the outboxes they fill need no flush of their own), and what those defer too.
  // Their outboxes are written before those filled earlier in the turn: a nudge sweep's Pongs to 250 quiet
  // members took 2-3 ms to write, and a session's broadcasts of the turn waited behind them (250 sessions of
  // 4: p99 5.2-6.2 ms against 3.4-4.7 before the turn queue). Each outbox's own order is untouched.
  const early = dirty;
  dirty = [];
  let deferredRan = false;
  try {
    for (let fn = turnEnd.shift(); fn !== undefined; fn = turnEnd.shift()) fn();
    deferredRan = true;
  } finally {
    flushScheduled = false;
    if (!deferredRan) {
      // One threw: the rest, and the outboxes waiting, go at the next flush rather than never.
      dirty = early.length === 0 ? dirty : dirty.concat(early);
      _scheduleTurn();
    }
  }
  const batch = early.length === 0 ? dirty : dirty.concat(early);
  dirty = [];
  for (let i = 0; i < batch.length; i++) batch[i]!.run();
}

function _scheduleTurn(): void {
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushDirty);
  }
}

function scheduleFlush(outbox: _Outbox): void {
  dirty.push(outbox);
  _scheduleTurn();
}

/**
 * Runs `fn` once this turn of the event loop has read what it will, just before the
 * outboxes write: frames it queues leave in the same writes as everything queued this turn.
 */
export function atTurnEnd(fn: () => void): void {
  turnEnd.push(fn);
  _scheduleTurn();
}

/** One queue of frames, small ones merged into chunks it owns. */
interface _Queue {
  items: Uint8Array[];
  /** What each item holds in memory. */
  costs: number[];
  head: number;
  /** The open chunk small frames are appended to; it is the last item while open. */
  tail: Uint8Array | null;
  tailFill: number;
  bytes: number;
  held: number;
}

function _queue(): _Queue {
  return { items: [], costs: [], head: 0, tail: null, tailFill: 0, bytes: 0, held: 0 };
}

/**
 * Appends a frame (copied into a chunk when `copy`; else held as it is, at `cost`); returns how much more
 * memory the queue now holds.
 */
function _push(q: _Queue, frame: Uint8Array, batchBytes: number, copy: boolean, cost = frame.length): number {
  q.bytes += frame.length;
  if (!copy || frame.length > SMALL_FRAME) {
    q.tail = null;
    q.items.push(frame);
    q.costs.push(cost);
    q.held += cost;
    return cost;
  }
  const tail = q.tail;
  if (tail !== null && q.tailFill + frame.length <= tail.length) {
    tail.set(frame, q.tailFill);
    q.tailFill += frame.length;
    q.items[q.items.length - 1] = tail.subarray(0, q.tailFill);
    return 0;
  }
  const last = q.items.length - 1;
  if (tail !== null && tail.length < batchBytes) {
    // Grow the open chunk (capacity at most twice what it holds) rather than start a second one.
    const grown = new Uint8Array(Math.min(batchBytes, Math.max(tail.length * 2, q.tailFill + frame.length)));
    if (q.tailFill + frame.length <= grown.length) {
      grown.set(tail.subarray(0, q.tailFill));
      grown.set(frame, q.tailFill);
      q.tailFill += frame.length;
      q.tail = grown;
      q.items[last] = grown.subarray(0, q.tailFill);
      const delta = grown.length - q.costs[last]!;
      q.costs[last] = grown.length;
      q.held += delta;
      return delta;
    }
  }
  let capacity = MIN_CHUNK;
  while (capacity < frame.length) capacity *= 2;
  const chunk = new Uint8Array(capacity);
  chunk.set(frame);
  q.tail = chunk;
  q.tailFill = frame.length;
  q.items.push(chunk.subarray(0, frame.length));
  q.costs.push(capacity);
  q.held += capacity;
  return capacity;
}

function _empty(q: _Queue): boolean {
  return q.head >= q.items.length;
}

/**
 * Arrays of up to this many frames are emptied in place and kept: a peer that keeps up
 * empties its queue every turn, and fresh arrays each time were most of what a busy relay
 * allocated per turn. Longer ones (a backlog) are let go.
 */
const KEEP_ITEMS = 1024;

function _reset(q: _Queue): void {
  if (q.items.length === 0 && q.tail === null) return;
  if (q.items.length > KEEP_ITEMS) {
    q.items = [];
    q.costs = [];
  } else {
    q.items.length = 0;
    q.costs.length = 0;
  }
  q.head = 0;
  q.tail = null;
  q.tailFill = 0;
  q.bytes = 0;
  q.held = 0;
}

/** What `_take` took besides the bytes: one object for the module, read at once, so a write allocates nothing. */
const _taken = { cost: 0, merged: false };

/** Takes the next items of `q` as one chunk, small ones merged (into the shared area) up to `batchBytes`. */
function _take(q: _Queue, batchBytes: number): Uint8Array {
  q.tail = null; // the open chunk is sealed: nothing is appended to bytes being written
  const first = q.items[q.head]!;
  let end = q.head + 1;
  let chunk = first;
  let cost = q.costs[q.head]!;
  let merged = false;
  if (first.length < batchBytes) {
    let total = first.length;
    while (end < q.items.length && total + q.items[end]!.length <= batchBytes) {
      total += q.items[end]!.length;
      cost += q.costs[end]!;
      end++;
    }
    if (end > q.head + 1) {
      chunk = mergeArea(batchBytes).subarray(0, total);
      merged = true;
      let at = 0;
      for (let i = q.head; i < end; i++) {
        chunk.set(q.items[i]!, at);
        at += q.items[i]!.length;
      }
    }
  }
  q.head = end;
  q.bytes -= chunk.length;
  q.held -= cost;
  _taken.cost = cost;
  _taken.merged = merged;
  return chunk;
}

export function createOutbox(sink: ByteSink, options: OutboxOptions): Outbox {
  return new _Outbox(sink, options);
}

/**
 * A class, not closures: a connection's outbox made a dozen functions and five getters of its own, and a relay
 * accepting thousands of connections a second (most of them cut within the second) spent its heap on them.
 */
class _Outbox implements Outbox {
  private readonly _sink: ByteSink;
  private readonly _options: OutboxOptions;
  private readonly _batchBytes: number;
  private readonly _budget: PendingBudget;
  private readonly _backlog: number;
  private readonly _front = _queue();
  private readonly _live = _queue();
  // The remainder of a partial write: always the next bytes the peer must get.
  private _partial: Uint8Array | null = null;
  private _partialCost = 0;
  private _partialLive = false;
  private _scheduled = false;
  private _blocked = false; // the last write was partial: wait for drain
  private _ending = false;
  private _gone = false;
  private _lastProgress = Date.now();

  constructor(sink: ByteSink, options: OutboxOptions) {
    this._sink = sink;
    this._options = options;
    this._batchBytes = options.batchBytes ?? DEFAULT_BATCH;
    this._budget = options.budget ?? createBudget(Number.MAX_SAFE_INTEGER);
    this._backlog = options.maxPendingBytes / 2;
  }

  private _liveHeld(): number {
    return this._live.held + (this._partialLive ? this._partialCost : 0);
  }

  private _schedule(): void {
    if (!this._scheduled && !this._blocked) {
      this._scheduled = true;
      scheduleFlush(this);
    }
  }

  /** The scheduled flush (flushDirty). */
  run(): void {
    this._scheduled = false;
    this.flush();
  }

  /** Writes `chunk`; what the socket leaves becomes the partial write. False when the socket is full or gone. */
  private _write(chunk: Uint8Array, cost: number, isLive: boolean, copyRest: boolean): boolean {
    const written = this._sink.write(chunk);
    if (written < 0) {
      if (isLive) charge(this._budget, -cost);
      this._gone = true;
      this.clear();
      return false;
    }
    if (written > 0) this._lastProgress = Date.now();
    if (written < chunk.length) {
      // The merge area is shared by every outbox: what the socket left must be copied out.
      const partial = copyRest ? chunk.slice(written) : chunk.subarray(written);
      const newCost = copyRest ? partial.length : cost;
      if (isLive) charge(this._budget, newCost - cost);
      this._partial = partial;
      this._partialCost = newCost;
      this._partialLive = isLive;
      this._blocked = true;
      return false;
    }
    if (isLive) charge(this._budget, -cost);
    return true;
  }

  /** Writes the next items of `q`, small ones merged; false when the socket is full or gone. */
  private _writeFrom(q: _Queue, isLive: boolean): boolean {
    const chunk = _take(q, this._batchBytes);
    return this._write(chunk, _taken.cost, isLive, _taken.merged);
  }

  flush(): void {
    this._blocked = false;
    if (this._gone) return;
    if (this._partial !== null) {
      const rest = this._partial;
      const cost = this._partialCost;
      this._partial = null;
      this._partialCost = 0;
      if (!this._write(rest, cost, this._partialLive, false)) return;
    }
    const front = this._front;
    const live = this._live;
    while (!this._gone && !_empty(front)) if (!this._writeFrom(front, false)) return;
    if (!this._gone) _reset(front);
    while (!this._gone && !_empty(live)) if (!this._writeFrom(live, true)) return;
    if (this._gone) return;
    _reset(live);
    if (this._ending) {
      this._gone = true;
      this._sink.end();
    }
    this._options.onEmpty?.();
  }

  clear(): void {
    charge(this._budget, -this._liveHeld());
    _reset(this._front);
    _reset(this._live);
    this._partial = null;
    this._partialCost = 0;
  }

  enqueue(frame: Uint8Array, isFront = false, own = false, cost = frame.length): boolean {
    if (this._gone || this._ending) return true;
    if (isFront) {
      _push(this._front, frame, this._batchBytes, false);
    } else {
      const held = this._liveHeld();
      if (held > 0 && held + cost > this._options.maxPendingBytes) return false;
      if (this._budget.over && held > this._backlog) return false;
      charge(this._budget, _push(this._live, frame, this._batchBytes, own, cost));
    }
    this._schedule();
    return true;
  }

  endAfterFlush(): void {
    if (this._ending || this._gone) return;
    this._ending = true;
    if (!this._blocked) this.flush();
  }

  endWith(last: Uint8Array): void {
    if (this._ending || this._gone) return;
    charge(this._budget, -this._live.held);
    _reset(this._front);
    _reset(this._live);
    charge(this._budget, _push(this._live, last, this._batchBytes, true));
    this._ending = true;
    if (!this._blocked) this.flush();
  }

  get pendingBytes(): number {
    return this._front.bytes + this._live.bytes + (this._partial?.length ?? 0);
  }

  get heldBytes(): number {
    return this._front.held + this._live.held + this._partialCost;
  }

  get liveBytes(): number {
    return this._liveHeld();
  }

  get lastProgress(): number {
    return this._lastProgress;
  }

  get frontBytes(): number {
    return this._front.bytes + (this._partial !== null && !this._partialLive ? this._partial.length : 0);
  }
}
