/**
 * Turns a TCP byte stream into `[u32 length][body]` frames.
 *
 * Memory: a body that arrives whole inside one chunk is handed out as a view of
 * that chunk (no copy); a body split across chunks gets one buffer of its exact
 * length, allocated once when its header is read and filled piece by piece, so
 * a 1 MiB frame in 64 KiB pieces is copied once, not re-concatenated. A length
 * over the maximum is never allocated: its body is skipped as it streams past.
 */
export interface FrameSink {
  /** A complete body. It may be a view of the input chunk: use it before returning. */
  frame(body: Uint8Array): void;
  /** A header announced `length` > max; its body will be skipped. */
  oversized(length: number): void;
}

export interface FrameReader {
  push(chunk: Uint8Array): void;
  /** Bytes of a partial frame held right now (at most one maximum-size frame). */
  readonly buffered: number;
  /** True while a frame has started but not finished (a peer that leaves here left mid-frame). */
  readonly midFrame: boolean;
  /** Bytes copied into split-frame buffers: linear in the input unless something is quadratic. */
  readonly stats: { bytesCopied: number };
  /** Stop delivering frames (the connection is closing); later pushes are ignored. */
  stop(): void;
  /** Before registration a connection may send only small frames; registering raises the cap. */
  setMaxFrameSize(bytes: number): void;
}

export function createFrameReader(maxFrameSize: number, sink: FrameSink): FrameReader {
  const header = new Uint8Array(4);
  const headerView = new DataView(header.buffer);
  let headerFill = 0;
  let body: Uint8Array | null = null;
  let bodyFill = 0;
  let skipRemaining = 0;
  let stopped = false;
  const stats = { bytesCopied: 0 };

  function startFrame(length: number, chunk: Uint8Array, at: number): number {
    if (length > maxFrameSize) {
      sink.oversized(length);
      skipRemaining = length;
    } else if (chunk.length - at >= length) {
      sink.frame(chunk.subarray(at, at + length));
      return at + length;
    } else {
      body = new Uint8Array(length);
      bodyFill = 0;
    }
    return at;
  }

  function push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && !stopped) {
      if (skipRemaining > 0) {
        const n = Math.min(skipRemaining, chunk.length - at);
        skipRemaining -= n;
        at += n;
      } else if (body !== null) {
        const n = Math.min(body.length - bodyFill, chunk.length - at);
        body.set(chunk.subarray(at, at + n), bodyFill);
        stats.bytesCopied += n;
        bodyFill += n;
        at += n;
        if (bodyFill === body.length) {
          const done = body;
          body = null;
          sink.frame(done);
        }
      } else {
        while (headerFill < 4 && at < chunk.length) header[headerFill++] = chunk[at++]!;
        if (headerFill === 4) {
          headerFill = 0;
          at = startFrame(headerView.getUint32(0), chunk, at);
        }
      }
    }
  }

  return {
    push,
    get buffered() {
      return body === null ? headerFill : bodyFill;
    },
    get midFrame() {
      return headerFill > 0 || body !== null || skipRemaining > 0;
    },
    stats,
    stop() {
      stopped = true;
      body = null;
    },
    setMaxFrameSize(bytes) {
      maxFrameSize = bytes;
    },
  };
}

/** `[u32 length][body]` for a body already encoded. */
export function frameOf(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}
