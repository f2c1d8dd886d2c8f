/**
 * The senders' schedule, the same in the generator and in its receiver processes:
 * each sender edits `rate` times a second from its own phase of the period, on the
 * clock every process of the machine shares (nowUs), so that senders in different
 * processes can be in phase.
 */
import type { RelayClient } from "../src/client/client.ts";
import { nowUs, type UpdateTemplate } from "./recorder.ts";

export interface PaceSpec {
  /** Edits a second per sender; Infinity: flat out. */
  rate: number;
  /** When the schedule starts, in ms on nowUs's clock. */
  startMs: number;
  durationS: number;
  /** Each sender's phase of the period, in [0, 1), in the order of `clients`. */
  phases: number[];
}

/** Sends on the schedule until it ends; resolves with the edits each sender made. */
export function paceSenders(clients: RelayClient[], templates: UpdateTemplate[], spec: PaceSpec): Promise<number[]> {
  const sent = new Array<number>(clients.length).fill(0);
  const endAt = spec.startMs + spec.durationS * 1000;
  return new Promise((resolve) => {
    const tick = () => {
      const now = nowUs() / 1000;
      if (now >= endAt) return resolve(sent);
      for (let s = 0; s < clients.length; s++) {
        const c = clients[s]!;
        if (c.isClosed) continue;
        let due: number;
        // Flat out: small bursts while the socket takes them. Bigger ones only queue in
        // this process and starve its own reading (it receives for the same instances).
        if (spec.rate === Infinity) due = c.pendingBytes < 64 * 1024 ? 8 : 0;
        else if (now < spec.startMs) due = 0;
        else due = Math.floor(((now - spec.startMs) / 1000) * spec.rate + spec.phases[s]!) - sent[s]!;
        for (let i = 0; i < due; i++) c.sendRaw(templates[s]!.frame(sent[s]!++, nowUs()));
      }
      setTimeout(tick, 1);
    };
    tick();
  });
}
