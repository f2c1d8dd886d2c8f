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
  return new _FrameReader(maxFrameSize, sink);
}

/** A class, not closures: every connection has one, and thousands a second come and go under attack. */
class _FrameReader implements FrameReader {
  readonly stats = { bytesCopied: 0 };
  private _maxFrameSize: number;
  private readonly _sink: FrameSink;
  private readonly _header = new Uint8Array(4);
  private _headerFill = 0;
  private _body: Uint8Array | null = null;
  private _bodyFill = 0;
  private _skipRemaining = 0;
  private _stopped = false;

  constructor(maxFrameSize: number, sink: FrameSink) {
    this._maxFrameSize = maxFrameSize;
    this._sink = sink;
  }

  private _startFrame(length: number, chunk: Uint8Array, at: number): number {
    if (length > this._maxFrameSize) {
      this._sink.oversized(length);
      this._skipRemaining = length;
    } else if (chunk.length - at >= length) {
      this._sink.frame(chunk.subarray(at, at + length));
      return at + length;
    } else {
      this._body = new Uint8Array(length);
      this._bodyFill = 0;
    }
    return at;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    const header = this._header;
    while (at < chunk.length && !this._stopped) {
      if (this._skipRemaining > 0) {
        const n = Math.min(this._skipRemaining, chunk.length - at);
        this._skipRemaining -= n;
        at += n;
      } else if (this._body !== null) {
        const body = this._body;
        const n = Math.min(body.length - this._bodyFill, chunk.length - at);
        body.set(chunk.subarray(at, at + n), this._bodyFill);
        this.stats.bytesCopied += n;
        this._bodyFill += n;
        at += n;
        if (this._bodyFill === body.length) {
          this._body = null;
          this._sink.frame(body);
        }
      } else {
        while (this._headerFill < 4 && at < chunk.length) header[this._headerFill++] = chunk[at++]!;
        if (this._headerFill === 4) {
          this._headerFill = 0;
          const length = ((header[0]! << 24) | (header[1]! << 16) | (header[2]! << 8) | header[3]!) >>> 0;
          at = this._startFrame(length, chunk, at);
        }
      }
    }
  }

  get buffered(): number {
    return this._body === null ? this._headerFill : this._bodyFill;
  }

  get midFrame(): boolean {
    return this._headerFill > 0 || this._body !== null || this._skipRemaining > 0;
  }

  stop(): void {
    this._stopped = true;
    this._body = null;
  }

  setMaxFrameSize(bytes: number): void {
    this._maxFrameSize = bytes;
  }
}

/** `[u32 length][body]` for a body already encoded. */
export function frameOf(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}
