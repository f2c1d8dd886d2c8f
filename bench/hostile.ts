/**
 * The `hostile` scenario (issues 12 and 27): a paced sender -> receiver pair in its
 * own session keeps playing while every attack of bench/attackers.ts runs against
 * the relay with its default limits. Prints the pair's loss and p99, the relay's
 * peak RSS, how players joining over TCP and over WebSocket fared during the
 * attack, whether the operator's live page got a slot, what one member of the
 * attacked session was told, how a late joiner on a 3.2 Mbit/s link fared, how
 * many lines the relay logged, and how many attackers were cut and why (/status).
 */
import { join } from "node:path";
import net from "node:net";
import { connect } from "../src/client/client.ts";
import { createFrameReader, frameOf } from "../src/protocol/framing.ts";
import { decodeMessage, encodeMessage } from "../src/protocol/messages.ts";
import { connectPool, runPhase, type PhaseResult } from "./load.ts";
import { launchRelay, type BenchRelay } from "./relay-process.ts";
import type { SpectatorReport, Watching } from "./spectators.ts";
import { connectWs } from "./ws-client.ts";

export const PAIR_TOKEN = "bench-pair-session-token-0123456789";
const ATTACK_TOKEN = "bench-attack-session-token-0123456789";
/** A session of its own with 16 MB of history, for the late joiner on a slow link. */
const HISTORY_TOKEN = "bench-history-session-token-0123456789";
/** A far venue's link: 3.2 Mbit/s. */
const SLOW_LINK_BYTES_PER_S = 400_000;

export interface Tally {
  ok: number;
  failed: number;
  /** Why the failed ones failed, by message. */
  why: Record<string, number>;
}

export interface HostileResult {
  pair: PhaseResult;
  peakRssMb: number | null;
  /** Fresh connect+register+leave from a player during the attack, over TCP. */
  probes: Tally & { p99Ms: number };
  /** The same over a WebSocket to /relay. */
  wsProbes: Tally;
  /** The operator's own live page (/events from loopback) during the attack. */
  operatorPage: Tally;
  /** InstanceConnected/InstanceDisconnected one member of the attacked session was sent. */
  notices: number;
  /** A late joiner of a session with 16 MB of history, reading at 3.2 Mbit/s. */
  slowJoiner: { history: number; cut: boolean };
  /** Lines the relay logged during the run. */
  logLines: number;
  attacks: Record<string, number>;
  cut: Record<string, number>;
  refused: Record<string, number>;
  spectators?: SpectatorReport;
}

async function statusOf(relay: BenchRelay & { httpPort(): number | null }): Promise<{
  totals: {
    disconnects: Record<string, number>;
    registrations_rejected: Record<string, number>;
    connections_refused: number;
  };
} | null> {
  const port = relay.httpPort();
  if (port === null) return null;
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as never;
  } catch {
    return null;
  }
}

/** A port free right now. Only the benchmark does this (--http-port 0 means "off"); tests never do. */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Runs `attempt` every `everyMs` until `running()` is false; counts what resolved true. */
async function probe(running: () => boolean, everyMs: number, attempt: () => Promise<boolean>): Promise<Tally> {
  const t: Tally = { ok: 0, failed: 0, why: {} };
  while (running()) {
    const ok = await attempt().catch((e: Error) => {
      const why = e.message.slice(0, 60);
      t.why[why] = (t.why[why] ?? 0) + 1;
      return false;
    });
    if (ok) t.ok++;
    else t.failed++;
    await Bun.sleep(everyMs);
  }
  return t;
}

/** A player of the pair's session from `from`: connect, register, leave; throws with the relay's answer when refused. */
function registerFrom(port: number, from: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
    const timer = setTimeout(() => fail("no answer within 5 s"), 5000);
    function fail(why: string): void {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(why));
    }
    const reader = createFrameReader(0xffffffff, {
      frame(body) {
        const m = decodeMessage(body);
        if (m.type === "RegistrationResponse") {
          clearTimeout(timer);
          socket.end();
          resolve();
        } else if (m.type === "Error") fail(m.message);
      },
      oversized() {},
    });
    socket.on("connect", () =>
      socket.write(
        frameOf(
          encodeMessage({
            type: "RegisterInstance",
            instance_name: name,
            version: "0.1.0",
            session_token: PAIR_TOKEN,
            capabilities: [],
          }),
        ),
      ),
    );
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    socket.on("error", (e) => fail(e.message));
    socket.on("close", () => fail("closed before its RegistrationResponse"));
  });
}

/** A member of the attacked session counting the presence notices it is sent. */
async function observer(port: number): Promise<{ count(): number; close(): void }> {
  const c = await connect({ port, keepInbox: false });
  let n = 0;
  c.onFrame((body) => {
    const type = decodeMessage(body).type;
    if (type === "InstanceDisconnected" || type === "InstanceConnected") n++;
  });
  await c.register({ name: "observer", token: ATTACK_TOKEN, capabilities: ["presence"] });
  return { count: () => n, close: () => c.close() };
}

/** 990 updates of 16 KB (16 MB) into the history session, sent by an instance that then leaves. */
async function fillHistory(port: number): Promise<void> {
  const c = await connect({ port, keepInbox: false });
  await c.register({ name: "filler", token: HISTORY_TOKEN });
  const edit = new Uint8Array(16_000).fill(5);
  // 990 and a Ping stay under the rate limit (1000 a minute).
  for (let i = 0; i < 990; i++) c.sendUpdate(edit, BigInt(i));
  await c.ping(1n, 30_000);
  c.close();
}

/** Joins the history session and reads at SLOW_LINK_BYTES_PER_S until `stop`: history updates taken, and whether cut. */
function slowJoiner(port: number): { stop(): { history: number; cut: boolean } } {
  let history = 0;
  let cut = false;
  let read = 0;
  const t0 = performance.now();
  const reader = createFrameReader(0xffffffff, {
    frame(body) {
      const m = decodeMessage(body);
      if (m.type === "StateBroadcast") history++;
      else if (m.type === "Error") cut = true;
    },
    oversized() {},
  });
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.on("connect", () =>
    socket.write(
      frameOf(
        encodeMessage({
          type: "RegisterInstance",
          instance_name: "slow-joiner",
          version: "0.1.0",
          session_token: HISTORY_TOKEN,
          capabilities: [],
        }),
      ),
    ),
  );
  socket.on("data", (chunk: Buffer) => {
    read += chunk.length;
    reader.push(chunk);
    const early = read / SLOW_LINK_BYTES_PER_S - (performance.now() - t0) / 1000;
    if (early > 0) {
      socket.pause();
      setTimeout(() => socket.resume(), early * 1000);
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => (cut ||= history === 0));
  return {
    stop() {
      socket.destroy();
      return { history, cut };
    },
  };
}

/** `watch` (`--spectators`): spectators and an editor on the pair's session (bench/spectators.ts). */
export async function runHostile(binary: string | null, durationS: number, watch?: Watching): Promise<HostileResult> {
  const httpPort = freePort();
  const relay = await launchRelay({
    binary,
    flags: [
      ...(watch?.flags ?? []),
      "--token",
      PAIR_TOKEN,
      "--token",
      ATTACK_TOKEN,
      "--token",
      HISTORY_TOKEN,
      "--history",
      "1000",
      // Short enough that the relay from before this round cuts the late joiner within the run (16 MB at
      // 3.2 Mbit/s takes 40 s); long enough that a link's kernel buffers, which drain in bursts, make progress in it.
      "--replay-timeout",
      "10",
      "--trust-proxy",
      "127.0.0.1/32",
      "--log-level",
      "info",
      "--http-port",
      String(httpPort),
    ],
    keepDefaults: true,
  });
  try {
    const pool = await connectPool(relay, 2, { tokens: [PAIR_TOKEN] });
    await fillHistory(relay.port);
    const watcher = await observer(relay.port);
    const linesBefore = relay.warnings.length;
    const stopWatching = await watch?.start(relay);
    const attackers = Bun.spawn(
      [
        process.execPath,
        join(import.meta.dir, "attackers.ts"),
        "--port",
        String(relay.port),
        "--http-port",
        String(httpPort),
        "--token",
        ATTACK_TOKEN,
        "--duration",
        String(durationS + 2),
      ],
      { stdout: "pipe", stderr: "inherit" },
    );
    const attackReport = new Response(attackers.stdout).text();
    let probing = true;
    const running = () => probing;
    // Players joining while it goes on: each must get in, over TCP and over WebSocket.
    const probeTimes: number[] = [];
    let joins = 0;
    // Players come from many places: each from its own address (within every per-address budget).
    const tcp = probe(running, 250, async () => {
      const t0 = performance.now();
      const n = joins++;
      await registerFrom(relay.port, `127.0.5.${(n % 250) + 1}`, `tcp-player-${n}`);
      probeTimes.push(performance.now() - t0);
      return true;
    });
    const ws = probe(running, 250, async () => {
      // Through the proxy the relay trusts (127.0.0.1), naming the player's address.
      const c = await connectWs(`ws://127.0.0.1:${httpPort}/relay`, {
        "X-Forwarded-For": `198.18.0.${(joins % 250) + 1}`,
      });
      try {
        // A player gives up as the TCP probe's client does: closed, or no answer within 5 s.
        await Promise.race([
          c.register({ name: `ws-player-${joins++}`, token: PAIR_TOKEN }),
          c.closed.then(() => Promise.reject(new Error("closed before its RegistrationResponse"))),
          Bun.sleep(5000).then(() => Promise.reject(new Error("no answer within 5 s"))),
        ]);
      } finally {
        c.close();
      }
      return true;
    });
    const page = probe(running, 500, async () => {
      const res = await fetch(`http://127.0.0.1:${httpPort}/events`);
      await res.body?.cancel();
      return res.status === 200;
    });
    const slow = slowJoiner(relay.port);
    const pair = await runPhase(pool, { senders: 1, rate: 50, durationS, payload: 256 });
    const spectators = await stopWatching?.();
    probing = false;
    const [probes, wsProbes, operatorPage] = await Promise.all([tcp, ws, page]);
    // What it had taken by the end; cut or not, from the relay's own line (its last word may still sit behind
    // megabytes of history in the kernel's buffers).
    const slowResult = {
      history: slow.stop().history,
      cut: relay.warnings.some((l) => l.includes("'slow-joiner'") && l.includes("slow consumer")),
    };
    const attacks = JSON.parse((await attackReport).trim().split("\n").pop() || "{}") as Record<string, number>;
    await attackers.exited;
    const notices = watcher.count();
    watcher.close();
    const status = await statusOf(relay);
    pool.close();
    probeTimes.sort((a, b) => a - b);
    return {
      pair,
      peakRssMb: pair.rssMb.peak,
      probes: { ...probes, p99Ms: probeTimes[Math.floor(probeTimes.length * 0.99)] ?? NaN },
      wsProbes,
      operatorPage,
      notices,
      slowJoiner: slowResult,
      logLines: relay.warnings.length - linesBefore,
      attacks,
      cut: status?.totals.disconnects ?? {},
      refused: { ...(status?.totals.registrations_rejected ?? {}), at_accept: status?.totals.connections_refused ?? 0 },
      spectators,
    };
  } finally {
    await relay.stop();
  }
}
