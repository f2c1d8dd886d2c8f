/**
 * The `resume` scenario (docs/resume.md): two players behind `sova-relay tunnel`
 * processes, editing every 100 ms with Sova's own client habits; Alice's path to
 * the relay runs through a proxy here that cuts every connection and refuses
 * new ones for a gap (1, 5 and 20 s, several times each), while Bob plays on.
 * Counted: edits lost and repeated (both ways, over the whole run), the time
 * from the path being back to Alice's session restored (her tunnel's
 * `tunnel_resumed` line, against the proxy's clock), and what the relay
 * (/metrics: parked instances, resumption log bytes; RSS) and the tunnels hold
 * during a gap.
 */
import type { Socket, TCPSocketListener } from "bun";
import { join } from "node:path";
import { connectSovaDouble } from "../tests/support/sova-double.ts";
import { type Delivery, delivery, lastArrived, pacePlayer, receivedFrom } from "./paced-players.ts";
import { launchRelay, rssOf } from "./relay-process.ts";

const ROOT = join(import.meta.dir, "..");

export interface ResumeResult {
  gaps: Array<{ gapS: number; restoreMs: number[] }>;
  restoreP99Ms: number;
  aliceToBob: Delivery;
  bobToAlice: Delivery;
  /** While a gap is open. */
  relayParkedInstances: number;
  relayResumeBufferBytes: number;
  relayRssMb: { before: number | null; duringGap: number | null };
  tunnelHeldBytesMax: number;
  tunnelRssMb: { before: number | null; duringGap: number | null };
  resumptions: number;
  /** Edits the relay dropped for the rate limit: a loss that is not resumption's. */
  rateLimited: number;
}

/** A TCP forwarder that can drop everything it carries and refuse connections for a while. */
function gapProxy(to: number) {
  type Side = { peer: Socket<Side> | null; queue: Uint8Array[] };
  let listener: TCPSocketListener<Side> | null = null;
  let port = 0;
  const open = new Set<Socket<Side>>();
  const write = (s: Socket<Side>, chunk: Uint8Array) => {
    if (s.data.queue.length > 0) return void s.data.queue.push(chunk.slice());
    const n = s.write(chunk);
    if (n < chunk.length) s.data.queue.push(chunk.slice(Math.max(0, n)));
  };
  const handlers = {
    data: (s: Socket<Side>, chunk: Uint8Array) => (s.data.peer ? write(s.data.peer, chunk) : undefined),
    drain(s: Socket<Side>) {
      while (s.data.queue.length > 0) {
        const head = s.data.queue[0]!;
        const n = s.write(head);
        if (n < head.length) {
          s.data.queue[0] = head.subarray(Math.max(0, n));
          return;
        }
        s.data.queue.shift();
      }
    },
    close(s: Socket<Side>) {
      open.delete(s);
      s.data.peer?.end();
    },
    error() {},
  };
  function listen(): void {
    listener = Bun.listen<Side>({
      hostname: "127.0.0.1",
      port,
      socket: {
        ...handlers,
        open(inbound) {
          inbound.data = { peer: null, queue: [] };
          open.add(inbound);
          inbound.pause();
          void Bun.connect<Side>({
            hostname: "127.0.0.1",
            port: to,
            socket: {
              ...handlers,
              open(outbound) {
                outbound.data = { peer: inbound, queue: [] };
                inbound.data.peer = outbound;
                open.add(outbound);
                inbound.resume();
              },
            },
          }).catch(() => inbound.end());
        },
      },
    });
    port = listener.port;
  }
  listen();
  return {
    get port() {
      return port;
    },
    /** Every carried connection ends and new ones are refused for `ms`; resolves when they are taken again. */
    async cut(ms: number): Promise<number> {
      listener?.stop(true);
      for (const s of open) s.terminate();
      open.clear();
      await Bun.sleep(ms);
      listen();
      return Date.now();
    },
    stop: () => listener?.stop(true),
  };
}

interface TunnelProcess {
  port: number;
  pid: number;
  events: Array<Record<string, unknown> & { event: string; time: string }>;
  stop(): Promise<void>;
}

async function startTunnel(binary: string | null, to: string): Promise<TunnelProcess> {
  const command = binary ? [binary] : [process.execPath, join(ROOT, "src/main.ts")];
  const proc = Bun.spawn(
    [...command, "tunnel", "--listen", "127.0.0.1:0", "--to", to, "--log-format", "json", "--log-level", "info"],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const events: TunnelProcess["events"] = [];
  const { promise: listening, resolve } = Promise.withResolvers<number>();
  void (async () => {
    let pending = "";
    for await (const chunk of proc.stderr) {
      pending += new TextDecoder().decode(chunk);
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const e = JSON.parse(line);
        events.push(e);
        if (e.event === "tunnel_listening") resolve(e.port);
      }
    }
  })();
  const port = await listening;
  return {
    port,
    pid: proc.pid,
    events,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

async function metric(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : Number.NaN;
}

function p99(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? Number.NaN;
}

/** `repeats[i]` gaps of `gapsS[i]` seconds each, two seconds of play between them. */
export async function runResume(
  binary: string | null,
  gapsS: number[] = [1, 5, 20],
  repeats: number[] = [8, 3, 2],
  log: (s: string) => void = () => {},
): Promise<ResumeResult> {
  const httpPort = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const hp = httpPort.port;
  httpPort.stop(true);
  const relay = await launchRelay({ binary, flags: ["--http-port", String(hp), "--resume-window", "30"] });
  const proxy = gapProxy(relay.port);
  const ta = await startTunnel(binary, `tcp://127.0.0.1:${proxy.port}`);
  const tb = await startTunnel(binary, `tcp://127.0.0.1:${relay.port}`);
  try {
    const [da, db] = await Promise.all([connectSovaDouble(ta.port, "alice"), connectSovaDouble(tb.port, "bob")]);
    // Ten edits a second each: a busy player, and well within the default rate limit (1000 a minute).
    const alice = pacePlayer("alice", da, 100);
    const bob = pacePlayer("bob", db, 100);
    const result = await gapsUnderPlay(proxy, { relay, hp, ta, tb }, gapsS, repeats, log);
    await Promise.all([alice.stop(), bob.stop()]);
    await Promise.all([lastArrived(db, alice, 10_000), lastArrived(da, bob, 10_000)]);
    const all = result.gaps.flatMap((g) => g.restoreMs);
    return {
      ...result,
      restoreP99Ms: p99(all),
      aliceToBob: delivery(alice.sent, receivedFrom(db, "alice")),
      bobToAlice: delivery(bob.sent, receivedFrom(da, "bob")),
      resumptions: await metric(hp, "sova_relay_resumptions_total"),
      rateLimited: await metric(hp, 'sova_relay_drops_total{reason="rate_limit"}'),
    };
  } finally {
    await Promise.all([ta.stop(), tb.stop()]);
    proxy.stop();
    await relay.stop();
  }
}

type Parts = {
  relay: Awaited<ReturnType<typeof launchRelay>>;
  hp: number;
  ta: TunnelProcess;
  tb: TunnelProcess;
};

async function gapsUnderPlay(
  proxy: ReturnType<typeof gapProxy>,
  p: Parts,
  gapsS: number[],
  repeats: number[],
  log: (s: string) => void,
) {
  const out = {
    gaps: [] as ResumeResult["gaps"],
    relayParkedInstances: 0,
    relayResumeBufferBytes: 0,
    relayRssMb: { before: p.relay.rssMb(), duringGap: null as number | null },
    tunnelHeldBytesMax: 0,
    tunnelRssMb: { before: rssOf(p.ta.pid), duringGap: null as number | null },
  };
  await Bun.sleep(2000);
  for (let g = 0; g < gapsS.length; g++) {
    const restoreMs: number[] = [];
    for (let r = 0; r < repeats[g]!; r++) {
      const resumedBefore = p.ta.events.filter((e) => e.event === "tunnel_resumed").length;
      const gapMs = gapsS[g]! * 1000;
      // Sampled just before the path comes back: what the relay and the tunnel hold for the parked player.
      const sample = Bun.sleep(Math.max(0, gapMs - 300)).then(async () => {
        out.relayParkedInstances = Math.max(
          out.relayParkedInstances,
          await metric(p.hp, "sova_relay_parked_instances"),
        );
        const bytes = await metric(p.hp, "sova_relay_resume_buffer_bytes");
        out.relayResumeBufferBytes = Math.max(out.relayResumeBufferBytes, bytes);
        out.relayRssMb.duringGap = Math.max(out.relayRssMb.duringGap ?? 0, p.relay.rssMb() ?? 0);
        out.tunnelRssMb.duringGap = Math.max(out.tunnelRssMb.duringGap ?? 0, rssOf(p.ta.pid) ?? 0);
      });
      const upAt = await proxy.cut(gapMs);
      await sample;
      const resumed = await waitFor(p.ta, "tunnel_resumed", resumedBefore);
      restoreMs.push(Date.parse(resumed.time) - upAt);
      out.tunnelHeldBytesMax = Math.max(out.tunnelHeldBytesMax, Number(resumed.held_bytes ?? 0));
      log(`  resume: gap ${gapsS[g]} s #${r + 1}: restored ${restoreMs.at(-1)} ms after the path was back`);
      await Bun.sleep(2000);
    }
    out.gaps.push({ gapS: gapsS[g]!, restoreMs });
  }
  return out;
}

/** The tunnel's next event of that name after the `already` ones it had. */
async function waitFor(t: TunnelProcess, event: string, already: number) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = t.events.filter((e) => e.event === event);
    if (found.length > already) return found[already]!;
    if (Date.now() > deadline) throw new Error(`no ${event} from the tunnel within 30 s`);
    await Bun.sleep(10);
  }
}
