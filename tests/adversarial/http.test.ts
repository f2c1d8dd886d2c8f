/**
 * Issue 12, the HTTP side and the guard, over real sockets: keyed session ids
 * and masked addresses (6), /events bounds (8), NAT-friendly limits (10), TLS
 * reload without refusals (11), and the suite without iptables (13).
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type RelayClient } from "../../src/client/client.ts";
import { resolveConfig } from "../../src/host/config.ts";
import { startHttp, type HttpOptions, type RunningHttp } from "../../src/http/server.ts";
import { createLogger } from "../../src/lib/log.ts";
import { cleanupAfterEach } from "../support/peers.ts";
import { startInProcess, startProcess, type RelayHandle } from "../support/relay.ts";
import { ROOT, TLS_DIR } from "../support/paths.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const TLS = TLS_DIR;
const TOKEN = "hardening-ensemble-Rk4vQ9";

const keep = cleanupAfterEach();

/** Resolves once `cond` holds, checking after each turn of the event loop. */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** An HTTP side on the relay, with its log lines kept. */
function withHttp(
  relay: RelayHandle,
  options: Partial<HttpOptions> = {},
): { http: RunningHttp; logs: string[]; get(path: string): Promise<Response> } {
  const logs: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => logs.push(line) });
  const http = startHttp(
    { host: "127.0.0.1", port: 0, ...options },
    {
      relay: relay.server!.relay,
      version: "0.1.0",
      startedAt: Date.now(),
      stopping: () => false,
      history: relay.server!.history,
    },
    log,
  );
  keep({ close: () => http.stop() } as unknown as RelayClient);
  return { http, logs, get: (path) => fetch(`http://127.0.0.1:${http.port}${path}`) };
}

async function pages(get: (path: string) => Promise<Response>): Promise<string> {
  return (
    await Promise.all(
      ["/", "/status", "/metrics", "/events"].map(async (p) => {
        const res = await get(p);
        if (p !== "/events") return res.text();
        const reader = res.body!.getReader();
        const first = new TextDecoder().decode((await reader.read()).value);
        await reader.cancel();
        return first;
      }),
    )
  ).join("\n");
}

describe("6: nothing public gives a token or an address away", () => {
  test(`session ids are keyed: \
no page shows the unkeyed hash of the token, and another relay names the token differently`, async () => {
    const unkeyed = createHash("sha256").update(`sova-relay session:${TOKEN}`).digest("hex").slice(0, 12);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const relay = keep(await startInProcess(["--token", TOKEN]));
      const { get } = withHttp(relay);
      keep(await connect({ port: relay.port })).register({ name: `player-${i}`, token: TOKEN });
      await relay.waitForEvent("registered", { instance: `player-${i}` });
      const text = await pages(get);
      expect(text).not.toContain(unkeyed);
      expect(text).not.toContain(TOKEN);
      const status = (await (await get("/status")).json()) as { sessions: Array<{ id: string }> };
      expect(status.sessions[0]!.id).toMatch(/^[0-9a-f]{12}$/);
      ids.push(status.sessions[0]!.id);
    }
    expect(ids[0]).not.toBe(ids[1]);
  });

  test(`with --state-dir the key is made once (mode 0600) and reused: \
session ids and their history survive a restart`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-key-"));
    const flags = ["--token", TOKEN, "--history", "10", "--state-dir", dir];
    const first = await startInProcess(flags);
    const a = await connect({ port: first.port });
    await a.register({ name: "a", token: TOKEN });
    for (let i = 0; i < 3; i++) a.sendUpdate(Uint8Array.of(i), BigInt(i));
    await a.ping(1n);
    const id = [...first.server!.relay.sessions.keys()][0];
    a.close();
    await first.stop();
    expect(statSync(join(dir, "session-key")).mode & 0o777).toBe(0o600);
    const key = readFileSync(join(dir, "session-key"), "utf8");

    const second = keep(await startInProcess(flags));
    expect(readFileSync(join(dir, "session-key"), "utf8")).toBe(key);
    const b = keep(await connect({ port: second.port }));
    await b.register({ name: "b", token: TOKEN });
    for (let i = 0; i < 3; i++) expect((await b.next("StateBroadcast")).timestamp).toBe(BigInt(i));
    expect([...second.server!.relay.sessions.keys()]).toEqual([id!]);
  });

  test("addresses are masked on every page: an IPv4 /16, an IPv6 /32", async () => {
    const relay = keep(await startInProcess(["--host", "::"]));
    const { get } = withHttp(relay);
    await keep(await connect({ host: "127.0.0.1", port: relay.port })).register({ name: "v4" });
    await keep(await connect({ host: "::1", port: relay.port })).register({ name: "v6" });
    const status = (await (await get("/status")).json()) as { instances: Array<{ name: string; address: string }> };
    expect(Object.fromEntries(status.instances.map((i) => [i.name, i.address]))).toEqual({
      v4: "127.0.x.x",
      v6: "0:0:x:x:x:x:x:x",
    });
    const text = await pages(get);
    expect(text).not.toContain("127.0.0.1");
    expect(text).not.toMatch(/::1\b/);
  });

  test("the status page listens on loopback unless told otherwise; the container image opens it itself", () => {
    expect(resolveConfig([], {}).httpHost).toBe("127.0.0.1");
    expect(resolveConfig(["--host", "0.0.0.0"], {}).httpHost).toBe("127.0.0.1");
    expect(resolveConfig(["--http-host", "0.0.0.0"], {}).httpHost).toBe("0.0.0.0");
    expect(readFileSync(join(ROOT, "Dockerfile.prebuilt"), "utf8")).toMatch(/SOVA_RELAY_HTTP_HOST=0\.0\.0\.0/);
  });

  test(`tokens too short to resist guessing stop the relay at start-up: \
one line, exit 2, the token not repeated`, () => {
    const cases: Array<[string[], Record<string, string>, string]> = [
      [["--token", "my-ensemble"], {}, "my-ensemble"],
      [[], { SOVA_RELAY_TOKENS: `${TOKEN},short-one` }, "short-one"],
      [["--token", "aaaaaaaaaaaaaaaaaaaaaaaa"], {}, "aaaaaaaaaaaaaaaaaaaaaaaa"],
    ];
    for (const [args, env, token] of cases) {
      const r = Bun.spawnSync([...SOURCE, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", ...args], {
        env: { ...process.env, ...env },
        stdout: "pipe",
        stderr: "pipe",
        timeout: 10_000,
      });
      const lines = r.stderr.toString().trim().split("\n");
      expect(r.exitCode).toBe(2);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          "^sova-relay: a session token is too easy to guess" +
            String.raw` \(\d+ characters; at least 16, with at least 8 different ones\)`,
        ),
      );
      expect(lines[0]).not.toContain(token);
    }
  });
});

describe("8: /events is bounded", () => {
  test("a subscriber cap with a clear 503, counted; a slot frees when a page closes", async () => {
    const relay = keep(await startInProcess());
    const { http, get } = withHttp(relay, { maxEventSubscribers: 2 });
    const open = await Promise.all([get("/events"), get("/events")]);
    const readers = open.map((r) => r.body!.getReader());
    for (const r of readers) expect(new TextDecoder().decode((await r.read()).value)).toContain("event: status");
    const refused = await get("/events");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("10");
    expect(await refused.text()).toBe("too many live status pages open (2); try again later\n");
    expect(await (await get("/metrics")).text()).toContain('sova_relay_events_closed_total{reason="subscriber_cap"} 1');
    await readers[0]!.cancel();
    await until(() => http.events.subscribers === 1, "the closed page's slot freed");
    const again = await get("/events");
    expect(again.status).toBe(200);
    await again.body!.cancel();
    await readers[1]!.cancel();
  });

  test("one address (IPv6: its /64) cannot take every slot; a HEAD takes none", async () => {
    const relay = keep(await startInProcess());
    const { http } = withHttp(relay, { host: "::", maxEventSubscribersPerAddress: 1 });
    const at = (host: string) => fetch(`http://${host}:${http.port}/events`);
    expect((await fetch(`http://127.0.0.1:${http.port}/events`, { method: "HEAD" })).status).toBe(200);
    expect(http.events.subscribers).toBe(0);
    const first = await at("127.0.0.1");
    expect(first.status).toBe(200);
    const second = await at("127.0.0.1");
    expect(second.status).toBe(503);
    expect(await second.text()).toBe("too many live status pages open from your address (1); try again later\n");
    const other = await at("[::1]");
    expect(other.status).toBe(200);
    await first.body!.cancel();
    await other.body!.cancel();
  });

  test("a subscriber that stops reading is cut, counted and logged; a reading page keeps getting events", async () => {
    const relay = keep(await startInProcess());
    // Ten rows make each event a few KiB, so kernel buffers fill in about a second.
    for (let i = 0; i < 10; i++)
      await keep(await connect({ port: relay.port })).register({ name: `player-with-a-long-name-${i}` });
    const { http, logs, get } = withHttp(relay, {
      eventIntervalMs: 1,
      maxEventBacklogBytes: 32 * 1024,
      maxEventStreamBytes: 1 << 30,
    });
    const stalled = await Bun.connect({
      hostname: "127.0.0.1",
      port: http.port,
      socket: { data() {}, close() {}, error() {} },
    });
    stalled.write("GET /events HTTP/1.1\r\nHost: relay\r\n\r\n");
    stalled.pause();
    await until(() => http.events.subscribers === 1, "the stalled page subscribed");
    await until(() => http.events.cut === 1, "the stalled page cut", 30_000);
    expect(logs.some((l) => /events_limited|subscribers cut for not reading/.test(l))).toBe(true);
    expect(http.events.subscribers).toBe(0);
    const reading = await get("/events");
    const reader = reading.body!.getReader();
    for (let i = 0; i < 3; i++)
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("player-with-a-long-name-9");
    await reader.cancel();
    expect(await (await get("/metrics")).text()).toContain('sova_relay_events_closed_total{reason="not_reading"} 1');
    stalled.terminate();
  }, 40_000);

  test("a stream ends after its byte budget (EventSource reconnects by itself), counted", async () => {
    const relay = keep(await startInProcess());
    const { http, get } = withHttp(relay, { eventIntervalMs: 5, maxEventStreamBytes: 20_000 });
    const res = await get("/events");
    const text = await res.text(); // resolves only when the relay ends the stream
    expect(text.length).toBeGreaterThanOrEqual(20_000);
    expect(text.startsWith("retry: 2000\n")).toBe(true);
    expect(http.events.rotated).toBe(1);
    expect(http.events.cut).toBe(0);
  });
});

describe("10: NAT-friendly limits", () => {
  test("with the defaults, --max-instances (20) players behind one address all join", async () => {
    const relay = keep(await startInProcess());
    for (let i = 0; i < 20; i++)
      expect((await keep(await connect({ port: relay.port })).register({ name: `nat-${i}` })).success).toBe(true);
    expect(relay.server!.relay.instanceCount).toBe(20);
  });

  test(`a typo costs nothing; \
a burst of bad tokens closes registrations from the address for seconds, not minutes`, async () => {
    const relay = keep(await startInProcess(["--token", TOKEN]));
    const typo = keep(await connect({ port: relay.port }));
    await expect(typo.register({ name: "typo", token: `${TOKEN}x` })).rejects.toThrow("Invalid session token");
    expect((await keep(await connect({ port: relay.port })).register({ name: "right", token: TOKEN })).success).toBe(
      true,
    );
    for (let i = 0; i < 9; i++) {
      const guess = keep(await connect({ port: relay.port }));
      await expect(guess.register({ name: `guess-${i}`, token: `wrong-guess-number-${i}` })).rejects.toThrow(
        "Invalid session token",
      );
    }
    const late = keep(await connect({ port: relay.port }));
    await expect(late.register({ name: "late", token: TOKEN })).rejects.toThrow(
      /^Too many failed registrations from this address; try again in (9|10) s$/,
    );
    // The player already in stays in.
    expect(relay.server!.relay.instanceCount).toBe(1);
  });
});

describe("11: TLS reload", () => {
  test(`20 SIGHUP reloads while a client connects in a loop: \
no connection is refused, each reload serves the new certificate`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-reload-"));
    const cert = join(dir, "relay.crt");
    const key = join(dir, "relay.key");
    const use = (name: "a" | "b") => {
      copyFileSync(join(TLS, `test-${name}.crt`), cert);
      copyFileSync(join(TLS, `test-${name}.key`), key);
    };
    use("a");
    const relay = keep(
      await startProcess(SOURCE)(["--tls-port", "any", "--tls-cert", cert, "--tls-key", key, "--log-level", "info"]),
    );
    await relay.waitForEvent("listening");
    const tlsPort = relay.tlsPort!;
    const failures: Record<string, number> = {};
    let handshakes = 0;
    let running = true;
    const attempt = () =>
      new Promise<void>((resolve) => {
        let done = false;
        const finish = (why: string | null) => {
          if (done) return;
          done = true;
          if (why === null) handshakes++;
          else failures[why] = (failures[why] ?? 0) + 1;
          resolve();
        };
        Bun.connect({
          hostname: "127.0.0.1",
          port: tlsPort,
          tls: { rejectUnauthorized: false },
          socket: {
            handshake(s, ok) {
              finish(ok ? null : "handshake failed");
              s.end();
            },
            data() {},
            close: () => finish("closed before the handshake"),
            error: (_s, e) => finish(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`),
            connectError: (_s, e) => finish((e as NodeJS.ErrnoException).code ?? e.message),
          },
        }).catch((e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
      });
    const loops = Array.from({ length: 4 }, async () => {
      while (running) await attempt();
    });
    const reloaded = () => relay.logs.filter((l) => l.includes("TLS certificate reloaded")).length;
    for (let i = 1; i <= 20; i++) {
      const name = i % 2 === 1 ? "b" : "a";
      use(name);
      relay.process!.kill("SIGHUP");
      await until(() => reloaded() === i, `reload ${i}`);
      // The replaced listener may take a connection or two before it closes; then only the new certificate is served.
      let served = false;
      for (let tries = 0; !served && tries < 200; tries++) {
        const ca = readFileSync(join(TLS, `test-${name}.crt`), "utf8");
        const c = await connect({ port: tlsPort, tls: { ca, serverName: "localhost" } }).catch(() => null);
        served =
          c !== null &&
          (await c.register({ name: `check-${i}` }).then(
            (r) => r.success,
            () => false,
          ));
        c?.close();
      }
      expect(served).toBe(true);
    }
    running = false;
    await Promise.all(loops);
    console.log(`TLS reload: ${handshakes} handshakes during 20 reloads; failures ${JSON.stringify(failures)}`);
    expect(handshakes).toBeGreaterThan(100);
    expect(failures.ECONNREFUSED ?? 0).toBe(0);
    // With net.ipv4.tcp_migrate_req=1 the kernel hands the old listener's queue to the new one: nothing fails at all.
    const migrate = (() => {
      try {
        return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
      } catch {
        return "0";
      }
    })();
    if (migrate === "1") expect(failures).toEqual({});
  }, 60_000);

  test("a reload with a bad certificate keeps the listener and the first error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-reload-"));
    const cert = join(dir, "relay.crt");
    const key = join(dir, "relay.key");
    copyFileSync(join(TLS, "test-a.crt"), cert);
    copyFileSync(join(TLS, "test-a.key"), key);
    const relay = keep(await startInProcess(["--tls-port", "0", "--tls-cert", cert, "--tls-key", key]));
    writeFileSync(cert, "not a certificate");
    expect(() => relay.server!.reloadTls()).toThrow(/invalid TLS certificate or key/);
    const c = keep(
      await connect({
        port: relay.tlsPort!,
        tls: { ca: readFileSync(join(TLS, "test-a.crt"), "utf8"), serverName: "localhost" },
      }),
    );
    expect((await c.register({ name: "still-a" })).success).toBe(true);
  });
});

describe("13: the suite without the tools the README does not install", () => {
  test("tests/adversarial/faults.test.ts without iptables on PATH: skipped with one loud line, exit 0", () => {
    const r = Bun.spawnSync(
      [process.execPath, "test", "tests/adversarial/faults.test.ts", "--test-name-pattern", "packets stop"],
      {
        cwd: ROOT,
        env: { ...process.env, PATH: "/usr/local/bin:/usr/bin:/bin" },
        stdout: "pipe",
        stderr: "pipe",
        timeout: 60_000,
      },
    );
    const out = r.stdout.toString() + r.stderr.toString();
    expect(out).toMatch(/^SKIP: vanished-peer test because /m);
    expect(r.exitCode).toBe(0);
  }, 70_000);
});
