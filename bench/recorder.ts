/**
 * What a receiving instance measures: latency from the send time the sender put
 * in `timestamp`, and order from the sequence number in the first payload bytes.
 * Used in the generator process and in its receiver processes alike.
 */

/** Wall-clock microseconds; comparable across processes on one machine. */
export const nowUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Reads sender, sequence and send time out of a StateBroadcast body as the relay writes it. */
export function parseBroadcast(body: Uint8Array): { sender: number; seq: number; sentUs: number } | null {
  // 81 ae "StateBroadcast" 83 b4 "source_instance_name" = 38 bytes, then the name.
  let p = 38;
  const m = body[p]!;
  if (m >= 0xa0 && m <= 0xbf) p += 1 + (m & 0x1f);
  else if (m === 0xd9) p += 2 + body[p + 1]!;
  else return null;
  p += 10; // a9 "timestamp"
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let sentUs: number;
  const t = body[p]!;
  if (t === 0xcf) {
    sentUs = Number(view.getBigUint64(p + 1));
    p += 9;
  } else if (t === 0xce) {
    sentUs = view.getUint32(p + 1);
    p += 5;
  } else return null;
  p += 12; // ab "update_data"
  const a = body[p]!;
  p += a >= 0x90 && a <= 0x9f ? 1 : a === 0xdc ? 3 : 5;
  const head = [0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 6; i++) {
    const e = body[p]!;
    if (e === 0xcc) {
      head[i] = body[p + 1]!;
      p += 2;
    } else {
      head[i] = e;
      p += 1;
    }
  }
  const seq = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
  return { sender: (head[4]! << 8) | head[5]!, seq, sentUs };
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
  return {
    record(receiver, body) {
      const b = parseBroadcast(body);
      if (b === null || b.sender >= senders) return;
      const latencyMs = (nowUs() - b.sentUs) / 1000;
      if (delivered >= samples.length) {
        const bigger = new Float64Array(samples.length * 2);
        bigger.set(samples);
        samples = bigger;
      }
      samples[delivered++] = latencyMs;
      lastDeliveryMs = Date.now();
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
