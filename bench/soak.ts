/**
 * `bun run soak`: 100 instances relaying at the default rate for minutes, with
 * periodic reconnects; memory and latency over time to a CSV and an SVG chart.
 * Fails (exit 1) if the relay's memory floor (the lowest RSS of each minute)
 * trends upward over the second half of the run.
 *
 *   bun run soak -- --minutes 10 --instances 100 --reconnect-every 30 --out bench/results
 */
import { defineCommand, runMain } from "citty";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type RelayClient } from "../src/client/client.ts";
import { nowUs, parseBroadcast } from "./recorder.ts";
import { defaultBinary, launchRelay } from "./relay-process.ts";

interface Sample {
  t: number;
  rss: number;
  p50: number;
  p99: number;
  deliveries: number;
  reconnects: number;
}

/** Least-squares slope of y over x. */
export function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const num = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

function svgChart(samples: Sample[], title: string): string {
  const W = 900;
  const H = 420;
  const pad = { l: 60, r: 60, t: 40, b: 40 };
  const maxT = Math.max(1, ...samples.map((s) => s.t));
  const maxRss = Math.max(10, ...samples.map((s) => s.rss)) * 1.1;
  const maxP99 = Math.max(1, ...samples.map((s) => s.p99)) * 1.1;
  const x = (t: number) => pad.l + (t / maxT) * (W - pad.l - pad.r);
  const yL = (v: number) => H - pad.b - (v / maxRss) * (H - pad.t - pad.b);
  const yR = (v: number) => H - pad.b - (v / maxP99) * (H - pad.t - pad.b);
  const line = (f: (s: Sample) => number, y: (v: number) => number) =>
    samples.map((s, i) => `${i ? "L" : "M"}${x(s.t).toFixed(1)},${y(f(s)).toFixed(1)}`).join(" ");
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const tick = (f: number) =>
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${yL(f * maxRss)}" y2="${yL(f * maxRss)}" stroke="#eee"/>` +
    `<text x="${pad.l - 6}" y="${yL(f * maxRss) + 4}" text-anchor="end" fill="#5b3fd1">` +
    `${(f * maxRss).toFixed(0)}</text>` +
    `<text x="${W - pad.r + 6}" y="${yR(f * maxP99) + 4}" fill="#b3401a">${(f * maxP99).toFixed(1)}</text>` +
    `<text x="${x(f * maxT)}" y="${H - pad.b + 18}" text-anchor="middle">${((f * maxT) / 60).toFixed(1)} min</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" \
font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${title}</text>
${ticks.map((f) => tick(f)).join("\n")}
<path d="${line((s) => s.rss, yL)}" fill="none" stroke="#5b3fd1" stroke-width="2"/>
<path d="${line((s) => s.p99, yR)}" fill="none" stroke="#b3401a" stroke-width="2"/>
<text x="${pad.l}" y="${pad.t - 6}" fill="#5b3fd1">relay RSS (MB)</text>
<text x="${W - pad.r}" y="${pad.t - 6}" text-anchor="end" fill="#b3401a">p99 latency (ms)</text>
</svg>
`;
}

const main = defineCommand({
  meta: { name: "soak", description: "Long run with reconnects: memory and latency over time" },
  args: {
    minutes: { type: "string", default: "10", description: "How long" },
    instances: { type: "string", default: "100", description: "Instances in one session" },
    rate: { type: "string", default: String(1000 / 60), description: "Updates per second per instance" },
    "reconnect-every": {
      type: "string",
      default: "30",
      description: "Seconds between reconnect rounds (10% of instances each)",
    },
    sample: { type: "string", default: "5", description: "Seconds per sample" },
    binary: { type: "string", description: "Relay binary (default: dist/sova-relay)" },
    out: { type: "string", default: "bench/results", description: "Where the CSV and SVG go" },
    "max-slope": {
      type: "string",
      default: "1",
      description: "Fail if RSS grows faster than this (MB per minute) over the second half",
    },
  },
  async run({ args }) {
    const minutes = Number(args.minutes);
    const n = Number(args.instances);
    const rate = Number(args.rate);
    const relay = await launchRelay({
      binary: args.binary ?? defaultBinary(),
      flags: ["--max-instances", String(n * 2)],
    });
    let latencies: number[] = [];
    let deliveries = 0;
    let reconnects = 0;
    let generation = 0;
    const clients: Array<RelayClient | null> = new Array(n).fill(null);

    async function joinRelay(i: number): Promise<void> {
      const c = await connect({ host: relay.host, port: relay.port, keepInbox: false });
      c.onFrame((body) => {
        const b = parseBroadcast(body);
        if (!b) return;
        latencies.push((nowUs() - b.sentUs) / 1000);
        deliveries++;
      });
      await c.register({ name: `soak-${i}-${generation++}` });
      clients[i] = c;
    }
    for (let i = 0; i < n; i += 25)
      await Promise.all(Array.from({ length: Math.min(25, n - i) }, (_, j) => joinRelay(i + j)));

    const start = performance.now();
    const sent = new Array<number>(n).fill(0);
    const payload = new Uint8Array(256);
    const sender = setInterval(() => {
      const elapsed = (performance.now() - start) / 1000;
      for (let i = 0; i < n; i++) {
        const c = clients[i];
        if (!c || c.isClosed) continue;
        const due = Math.floor(elapsed * rate + i / n) - sent[i]!;
        for (let k = 0; k < due; k++, sent[i]!++) c.sendUpdate(payload, BigInt(nowUs()));
      }
    }, 5);
    const reconnector = setInterval(() => {
      for (let k = 0; k < Math.max(1, Math.floor(n / 10)); k++) {
        const i = Math.floor(Math.random() * n);
        const c = clients[i];
        if (!c) continue;
        clients[i] = null;
        c.close();
        reconnects++;
        void c.closed.then(() => joinRelay(i));
      }
    }, Number(args["reconnect-every"]) * 1000);

    const samples: Sample[] = [];
    const rows = ["elapsed_s,rss_mb,p50_ms,p99_ms,deliveries,reconnects"];
    await new Promise<void>((resolve) => {
      const sampler = setInterval(() => {
        const t = (performance.now() - start) / 1000;
        const sorted = latencies.sort((a, b) => a - b);
        const s: Sample = {
          t,
          rss: relay.rssMb() ?? 0,
          p50: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
          p99: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
          deliveries,
          reconnects,
        };
        latencies = [];
        samples.push(s);
        rows.push(
          `${t.toFixed(1)},${s.rss.toFixed(1)},${s.p50.toFixed(3)},${s.p99.toFixed(3)},${deliveries},${reconnects}`,
        );
        console.log(
          `${(t / 60).toFixed(1)} min  RSS ${s.rss.toFixed(1)} MB  p50 ${s.p50.toFixed(2)} ms` +
            `  p99 ${s.p99.toFixed(2)} ms  deliveries ${deliveries}  reconnects ${reconnects}`,
        );
        if (t >= minutes * 60) {
          clearInterval(sampler);
          resolve();
        }
      }, Number(args.sample) * 1000);
    });
    clearInterval(sender);
    clearInterval(reconnector);
    const cut = relay.warnings.filter((l) => l.includes("slow consumer")).length;
    const pressure = relay.warnings.filter((l) => l.includes("reading paused")).length;
    for (const c of clients) c?.close();
    await relay.stop();

    mkdirSync(args.out, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const csv = join(args.out, `soak-${stamp}.csv`);
    const svg = join(args.out, `soak-${stamp}.svg`);
    writeFileSync(csv, `${rows.join("\n")}\n`);
    // RSS saws up and down with each collection; a leak shows in the floor it
    // returns to, so the trend is taken over the lowest RSS of each minute.
    const perMinute = Math.max(1, Math.round(60 / Number(args.sample)));
    const floors: Array<[number, number]> = [];
    for (let i = 0; i < samples.length; i += perMinute) {
      const chunk = samples.slice(i, i + perMinute);
      if (chunk.length < perMinute) break; // a part minute has no fair floor
      floors.push([chunk[0]!.t / 60, Math.min(...chunk.map((c) => c.rss))]);
    }
    const half = floors.length >= 4 ? floors.slice(Math.floor(floors.length / 2)) : floors;
    const mbPerMinute = slope(half);
    writeFileSync(
      svg,
      svgChart(
        samples,
        `sova-relay soak: ${n} instances, ${minutes} min, ${reconnects} reconnects;` +
          ` RSS trend ${mbPerMinute.toFixed(2)} MB/min`,
      ),
    );
    console.log(`\nwrote ${csv} and ${svg}`);
    console.log(
      `RSS floor trend (lowest RSS of each minute, second half of the run):` +
        ` ${mbPerMinute.toFixed(3)} MB per minute (limit ${args["max-slope"]});` +
        ` slow consumers cut: ${cut}; backpressure warnings: ${pressure}`,
    );
    if (mbPerMinute > Number(args["max-slope"])) {
      console.log("FAIL: memory trends upward");
      process.exit(1);
    }
    console.log("PASS: memory is flat");
  },
});

void runMain(main);
