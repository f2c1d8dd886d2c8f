/**
 * A connection's outbound queue. `socket.write` may take only part of a buffer
 * (or none): what it leaves is kept here and sent on `drain`, so nothing is lost
 * silently. Frames queued during one turn of the event loop (one socket read
 * can produce dozens of broadcasts to the same peer) leave in a single write.
 */
export interface ByteSink {
  /** Bytes taken, possibly fewer than offered; -1 when the socket is gone. */
  write(data: Uint8Array): number;
  end(): void;
}

/** Unsent bytes of every outbox together: one per server, shared by its connections. */
export interface PendingBudget {
  used: number;
  readonly limit: number;
  /** True from passing the limit until back under half of it. */
  over: boolean;
  /** Told when `over` changes: the server pauses reading while over, so senders feel TCP backpressure. */
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
  /** Unsent bytes past which `enqueue` refuses (the slow-consumer bound). */
  maxPendingBytes: number;
  /**
   * The relay's memory bound under overload. While all outboxes together hold
   * more than its limit, reading pauses (see PendingBudget), and an outbox
   * already holding half its own bound refuses more: the peers furthest behind
   * are cut first; peers that keep up hold next to nothing and are untouched.
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
   * `replay` frames (session history for a newcomer, itself bounded) are always
   * queued and do not count against the bound until they are sent.
   */
  enqueue(frame: Uint8Array, replay?: boolean): boolean;
  /** Sends what the socket will take now; call from the socket's `drain`. */
  flush(): void;
  /** Flush, then end the socket once everything queued has been taken. */
  endAfterFlush(): void;
  /** Forget everything queued (the socket is gone or being cut). */
  clear(): void;
  readonly pendingBytes: number;
}

const DEFAULT_BATCH = 64 * 1024;

/**
 * Small frames are merged here before a write. One area serves every outbox: a write
 * is synchronous and the kernel has copied what it took when it returns, so a fresh
 * buffer per write (the hot path's biggest allocation) is not needed.
 */
let mergeBuffer = new Uint8Array(0);

function mergeArea(size: number): Uint8Array {
  if (mergeBuffer.length < size) mergeBuffer = new Uint8Array(size);
  return mergeBuffer;
}

let dirty: Array<() => void> = [];
let flushScheduled = false;

function flushDirty(): void {
  flushScheduled = false;
  const batch = dirty;
  dirty = [];
  for (let i = 0; i < batch.length; i++) batch[i]!();
}

function scheduleFlush(flush: () => void): void {
  dirty.push(flush);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushDirty);
  }
}

export function createOutbox(sink: ByteSink, options: OutboxOptions): Outbox {
  const batchBytes = options.batchBytes ?? DEFAULT_BATCH;
  let frames: Uint8Array[] = [];
  let head = 0;
  let pendingBytes = 0;
  let scheduled = false;
  let blocked = false; // the last write was partial: wait for drain
  let ending = false;
  let gone = false;
  const budget = options.budget ?? createBudget(Number.MAX_SAFE_INTEGER);
  const backlog = options.maxPendingBytes / 2;
  // Replay frames sit at the front of the queue, so the first bytes written are theirs.
  let replayBytes = 0;

  function account(delta: number): void {
    pendingBytes += delta;
    charge(budget, delta);
  }

  function run(): void {
    scheduled = false;
    flush();
  }

  /** Writes one chunk: the head frame alone, or small frames merged; false when the socket is full or gone. */
  function writeNext(): boolean {
    const first = frames[head]!;
    let end = head + 1;
    let chunk = first;
    let merged = false;
    if (first.length < batchBytes) {
      let total = first.length;
      while (end < frames.length && total + frames[end]!.length <= batchBytes) total += frames[end++]!.length;
      if (end > head + 1) {
        chunk = mergeArea(batchBytes).subarray(0, total);
        merged = true;
        let at = 0;
        for (let i = head; i < end; i++) {
          chunk.set(frames[i]!, at);
          at += frames[i]!.length;
        }
      }
    }
    const written = sink.write(chunk);
    if (written < 0) {
      clear();
      gone = true;
      return false;
    }
    account(-written);
    replayBytes = Math.max(0, replayBytes - written);
    if (written < chunk.length) {
      head = end - 1;
      // The merge area is shared by every outbox: what the socket left must be copied out.
      frames[head] = merged ? chunk.slice(written) : chunk.subarray(written);
      blocked = true;
      return false;
    }
    head = end;
    return true;
  }

  function flush(): void {
    blocked = false;
    while (head < frames.length && !gone) if (!writeNext()) return;
    if (frames.length > 0) {
      frames = [];
      head = 0;
    }
    if (ending && !gone) {
      gone = true;
      sink.end();
    }
    options.onEmpty?.();
  }

  function clear(): void {
    frames = [];
    head = 0;
    replayBytes = 0;
    account(-pendingBytes);
  }

  return {
    enqueue(frame, replay = false) {
      if (gone || ending) return true;
      const counted = pendingBytes - replayBytes;
      if (!replay) {
        if (counted > 0 && counted + frame.length > options.maxPendingBytes) return false;
        if (budget.over && counted > backlog) return false;
      } else replayBytes += frame.length;
      frames.push(frame);
      account(frame.length);
      if (!scheduled && !blocked) {
        scheduled = true;
        scheduleFlush(run);
      }
      return true;
    },
    flush,
    endAfterFlush() {
      if (ending || gone) return;
      ending = true;
      if (!blocked) flush();
    },
    clear,
    get pendingBytes() {
      return pendingBytes;
    },
  };
}
