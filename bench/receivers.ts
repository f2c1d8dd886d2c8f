/**
 * A receiver process of the load generator: connects its share of the instances,
 * measures what reaches them, and reports to the generator over IPC. With a crowd
 * of 1000, one process reading every delivery becomes the bottleneck and its own
 * queueing shows up as relay latency; spreading receivers over processes lets the
 * figures show the relay. Started by bench/load.ts, not by hand.
 */
import { connectInstances, updateTemplates } from "./load.ts";
import { type PaceSpec, paceSenders } from "./pacer.ts";
import { createRecorder, type Recorder } from "./recorder.ts";

export interface ReceiversSpec {
  host: string;
  port: number;
  /** Instance indices [from, to): names bench-<index>. */
  from: number;
  to: number;
  tokens: string[] | null;
}

export type ToReceivers =
  /** `pace`: the schedule of this process's first `pace.phases.length` instances, which send too. */
  | { type: "start"; senders: number; expectedDeliveries: number; pace?: PaceSpec; payload?: number }
  | { type: "poll" }
  | { type: "stop" }
  | { type: "close" };

export type FromReceivers =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "progress"; delivered: number; lastDeliveryMs: number; sent: number; pacing: boolean }
  | { type: "result"; delivered: number; outOfOrder: number; samples: Float64Array; cut: number };

const reply = (m: FromReceivers) => process.send!(m);

async function main(spec: ReceiversSpec): Promise<void> {
  let recorder: Recorder | null = null;
  const clients = await connectInstances(spec, spec.from, spec.to, spec.tokens, (local, body) =>
    recorder?.record(local, body),
  );
  await Promise.all(clients.map((c) => c.ping(1n, 30_000)));
  let sent = 0;
  let pacing = false;
  process.on("message", (m: ToReceivers) => {
    if (m.type === "start") {
      recorder = createRecorder(clients.length, m.senders, m.expectedDeliveries);
      sent = 0;
      if (m.pace && m.pace.phases.length > 0) {
        const senders = clients.slice(0, m.pace.phases.length);
        pacing = true;
        void paceSenders(senders, updateTemplates(senders, spec.from, m.payload ?? 0), m.pace).then((counts) => {
          sent = counts.reduce((a, b) => a + b, 0);
          pacing = false;
        });
      }
    } else if (m.type === "poll")
      reply({
        type: "progress",
        delivered: recorder?.delivered ?? 0,
        lastDeliveryMs: recorder?.lastDeliveryMs ?? Date.now(),
        sent,
        pacing,
      });
    else if (m.type === "stop") {
      const r = recorder;
      recorder = null;
      reply({
        type: "result",
        delivered: r?.delivered ?? 0,
        outOfOrder: r?.outOfOrder ?? 0,
        samples: r ? r.samples().slice() : new Float64Array(0),
        cut: clients.filter((c) => c.isClosed).length,
      });
    } else if (m.type === "close") {
      for (const c of clients) c.close();
      process.exit(0);
    }
  });
  reply({ type: "ready" });
}

main(JSON.parse(process.argv[2]!) as ReceiversSpec).catch((error: Error) => {
  reply({ type: "failed", message: error.message });
  process.exit(1);
});
