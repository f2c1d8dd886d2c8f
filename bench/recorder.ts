/**
 * What a receiving instance measures: latency from the send time the sender put
 * in `timestamp`, and order from the sequence number in the first payload bytes.
 * Used in the generator process and in its receiver processes alike.
 */

/** Read once: the getter cost more than everything else the recorder does per delivery. */
const TIME_ORIGIN = performance.timeOrigin;

/** Wall-clock microseconds; comparable across processes on one machine. */
export const nowUs = (): number => Math.round((TIME_ORIGIN + performance.now()) * 1000);

export interface BroadcastFields {
  sender: number;
  seq: number;
  sentUs: number;
}

/** Reads sender, sequence and send time out of a StateBroadcast body as the relay writes it. */
export function parseBroadcast(body: Uint8Array): BroadcastFields | null {
  const out: BroadcastFields = { sender: 0, seq: 0, sentUs: 0 };
  return readBroadcast(body, out) ? out : null;
}

const u32 = (b: Uint8Array, p: number) => ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;

/**
 * `parseBroadcast` into `out`, allocating nothing: the recorder reads every delivery, a
 * quarter of a million a second in the ramp, and a DataView and a result object per
 * delivery were most of what the generator spent on each.
 */
export function readBroadcast(body: Uint8Array, out: BroadcastFields): boolean {
  // 81 ae "StateBroadcast" 83 b4 "source_instance_name" = 38 bytes, then the name.
  let p = 38;
  const m = body[p]!;
  if (m >= 0xa0 && m <= 0xbf) p += 1 + (m & 0x1f);
  else if (m === 0xd9) p += 2 + body[p + 1]!;
  else return false;
  p += 10; // a9 "timestamp"
  const t = body[p]!;
  if (t === 0xcf) {
    out.sentUs = u32(body, p + 1) * 2 ** 32 + u32(body, p + 5);
    p += 9;
  } else if (t === 0xce) {
    out.sentUs = u32(body, p + 1);
    p += 5;
  } else return false;
  p += 12; // ab "update_data"
  const a = body[p]!;
  p += a >= 0x90 && a <= 0x9f ? 1 : a === 0xdc ? 3 : 5;
  // Six positive fixints (see UpdateTemplate): a 28-bit sequence, a 14-bit sender.
  const h = (i: number) => body[p + i]! & 0x7f;
  out.seq = (h(0) << 21) | (h(1) << 14) | (h(2) << 7) | h(3);
  out.sender = (h(4) << 7) | h(5);
  return true;
}

/**
 * A sender's StateUpdate frame, encoded once. Each send copies it and patches in
 * the sequence number and the send time, so the send time is taken right before
 * the write: encoding a 512 KiB payload (milliseconds) is not counted as latency,
 * and the generator's CPU goes to sending rather than encoding. The first six
 * payload bytes are kept below 0x80, so each is one byte on the wire and the
 * frame's layout never changes.
 */
export interface UpdateTemplate {
  frame(seq: number, sentUs: number): Uint8Array;
}

export function createUpdateTemplate(
  encode: (payload: Uint8Array, timestamp: bigint) => Uint8Array,
  sender: number,
  payloadBytes: number,
): UpdateTemplate {
  const payload = new Uint8Array(Math.max(6, payloadBytes));
  for (let i = 6; i < payload.length; i++) payload[i] = (i * 7 + sender) & 0xff;
  payload[4] = (sender >> 7) & 0x7f;
  payload[5] = sender & 0x7f;
  // A u64 above 2^32 is written as 0xcf + 8 bytes, as every real send time is.
  const template = encode(payload, 1n << 62n);
  const timestampAt = indexAfter(template, "\xa9timestamp") + 1;
  const dataKey = indexAfter(template, "\xabupdate_data");
  const header = template[dataKey]!;
  const dataAt = dataKey + (header >= 0x90 && header <= 0x9f ? 1 : header === 0xdc ? 3 : 5);
  return {
    frame(seq, sentUs) {
      const f = template.slice();
      const view = new DataView(f.buffer);
      view.setBigUint64(timestampAt, BigInt(sentUs));
      f[dataAt] = (seq >>> 21) & 0x7f;
      f[dataAt + 1] = (seq >>> 14) & 0x7f;
      f[dataAt + 2] = (seq >>> 7) & 0x7f;
      f[dataAt + 3] = seq & 0x7f;
      return f;
    },
  };
}

function indexAfter(bytes: Uint8Array, ascii: string): number {
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(Buffer.from(ascii, "latin1"));
  if (at === -1) throw new Error(`no ${ascii} in the template frame`);
  return at + ascii.length;
}

export interface Recorder {
  /** A StateBroadcast `body` arrived at local receiver `receiver`. */
  record(receiver: number, body: Uint8Array): void;
  readonly delivered: number;
  readonly outOfOrder: number;
  /** Wall-clock milliseconds of the last delivery (of the start, before any). */
  readonly lastDeliveryMs: number;
  /** Latencies in milliseconds, one per delivery, in arrival order. */
  samples(): Float64Array;
}

export function createRecorder(receivers: number, senders: number, expectedDeliveries: number): Recorder {
  const lastSeq = new Int32Array(receivers * senders).fill(-1);
  let samples = new Float64Array(Math.min(8_000_000, Math.max(1024, Math.ceil(expectedDeliveries))));
  let delivered = 0;
  let outOfOrder = 0;
  let lastDeliveryMs = Date.now();
  const b: BroadcastFields = { sender: 0, seq: 0, sentUs: 0 };
  // Frames read out of one socket read are views of one buffer, one after another: they
  // arrived together, so they share its arrival time. (Reading the clock per frame cost
  // the generator a third of its time per delivery on a VM.)
  let chunk: ArrayBufferLike | null = null;
  let chunkEnd = 0;
  let now = 0;
  return {
    record(receiver, body) {
      if (!readBroadcast(body, b) || b.sender >= senders) return;
      if (body.buffer !== chunk || body.byteOffset < chunkEnd) now = nowUs();
      chunk = body.buffer;
      chunkEnd = body.byteOffset + body.byteLength;
      if (delivered >= samples.length) {
        const bigger = new Float64Array(samples.length * 2);
        bigger.set(samples);
        samples = bigger;
      }
      samples[delivered++] = (now - b.sentUs) / 1000;
      lastDeliveryMs = now / 1000;
      const k = receiver * senders + b.sender;
      if (b.seq <= lastSeq[k]!) outOfOrder++;
      lastSeq[k] = b.seq;
    },
    get delivered() {
      return delivered;
    },
    get outOfOrder() {
      return outOfOrder;
    },
    get lastDeliveryMs() {
      return lastDeliveryMs;
    },
    samples: () => samples.subarray(0, delivered),
  };
}
