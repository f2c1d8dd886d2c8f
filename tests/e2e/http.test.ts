/** The HTTP side against a running relay with real instances connected. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type HttpOptions, startHttp, type RunningHttp } from "../../src/http/server.ts";
import { COUNTERS } from "../../src/core/stats.ts";
import { createLogger, silentLogger } from "../../src/lib/log.ts";
import { ClientPool, logWatcher, startInProcess, type RelayHandle } from "../support/relay.ts";

const TOKEN = "http-test-token-Vx9";
const EVIL = "<img src=x onerror=alert(1)>";

let relay: RelayHandle;
let http: RunningHttp;
let pool: ClientPool;
let stopping = false;

beforeAll(async () => {
  relay = await startInProcess(["--token", TOKEN]);
  http = startHttp(
    { host: "127.0.0.1", port: 0, eventIntervalMs: 100 },
    { relay: relay.server!.relay, version: "0.1.0", startedAt: Date.now() - 5000, stopping: () => stopping },
    silentLogger,
  );
  pool = new ClientPool(() => relay.port);
});
afterAll(async () => {
  pool.closeAll();
  http.stop();
  await relay.stop();
});

const get = (path: string, init?: RequestInit) => fetch(`${http.url.replace(/\/$/, "")}${path}`, init);

/** One line of the Prometheus text format: comment, or name{labels} value. */
// prom-client writes NaN as "Nan"; Prometheus parses either (Go's ParseFloat ignores case).
const SAMPLE = new RegExp(
  String.raw`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})?` +
    String.raw` (-?[0-9.e+-]+|NaN|Nan|\+Inf|-Inf)$`,
);
const COMMENT =
  /^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$/;

function metric(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ").at(-1)) : NaN;
}

describe("HTTP", () => {
  test("/status: the old relay's fields, plus sessions, limits and totals", async () => {
    const a = await pool.register("alice-studio", { token: TOKEN });
    const res = await get("/status");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    // biome-ignore lint: the JSON is checked field by field below
    const s = (await res.json()) as any;
    expect(s.status).toBe("ok");
    expect(s.version).toBe("0.1.0");
    expect(s.connected_instances).toBe(1);
    expect(typeof s.uptime).toBe("number");
    expect(s.uptime).toBeGreaterThanOrEqual(5);
    const inst = s.instances[0];
    expect(inst).toMatchObject({ name: "alice-studio", version: "0.1.0" });
    expect(inst.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof inst.connected_at).toBe("number");
    expect(Math.abs(inst.connected_at - Date.now() / 1000)).toBeLessThan(10);
    expect(inst.address).toBe("127.0.x.x");
    expect(s.sessions).toEqual([
      { id: inst.session, instances: 1, created_at: expect.any(Number), history_entries: 0, history_bytes: 0 },
    ]);
    expect(s.limits.max_instances).toBe(40);
    expect(s.totals.registrations_accepted).toBeGreaterThanOrEqual(1);
    a.close();
    await a.closed;
  });

  test("/: a page with the instances, every name escaped", async () => {
    const evil = await pool.register(EVIL, { token: TOKEN });
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain("&#60;img src=x onerror=alert(1)&#62;");
    expect(html).not.toContain(EVIL);
    expect(html).toContain("127.0.x.x");
    expect(html).not.toMatch(/<(link|img|script) [^>]*src=|href="https?:/); // nothing loaded from elsewhere
    evil.close();
    await relay.waitForEvent("disconnected", { instance: EVIL });
  });

  test("/events: server-sent events carry the live part of the page", async () => {
    const a = await pool.register("streamer", { token: TOKEN });
    const res = await get("/events");
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("streamer")) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toMatch(/^retry: \d+\nevent: status\ndata: "/m);
    await reader.cancel();
    a.close();
    await relay.waitForEvent("disconnected", { instance: "streamer" });
  });

  test("/metrics: valid exposition format, and the counters move when messages flow", async () => {
    const before = await (await get("/metrics")).text();
    const a = await pool.register("m1", { token: TOKEN });
    const b = await pool.register("m2", { token: TOKEN });
    const others = ((await (await get("/status")).json()) as { connected_instances: number }).connected_instances - 1;
    for (let i = 0; i < 5; i++) a.sendUpdate(Uint8Array.of(i), BigInt(i));
    for (let i = 0; i < 5; i++) await b.next("StateBroadcast");
    const res = await get("/metrics");
    expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const text = await res.text();
    const families = new Set<string>();
    for (const line of text.trimEnd().split("\n")) {
      if (line === "") continue;
      if (line.startsWith("#")) {
        expect(line).toMatch(COMMENT);
        if (line.startsWith("# TYPE ")) {
          const name = line.split(" ")[2]!;
          expect(families.has(name)).toBe(false);
          families.add(name);
        }
      } else expect(line).toMatch(SAMPLE);
    }
    expect(metric(text, "sova_relay_deliveries_total")).toBe(
      metric(before, "sova_relay_deliveries_total") + 5 * others,
    );
    expect(metric(text, "sova_relay_messages_received_total", '{type="StateUpdate"}')).toBeGreaterThanOrEqual(5);
    expect(metric(text, "sova_relay_relay_latency_seconds_count")).toBeGreaterThanOrEqual(5);
    expect(metric(text, "sova_relay_relay_latency_seconds_bucket", '{le="+Inf"}')).toBe(
      metric(text, "sova_relay_relay_latency_seconds_count"),
    );
    expect(metric(text, "sova_relay_received_bytes_total")).toBeGreaterThan(
      metric(before, "sova_relay_received_bytes_total"),
    );
    expect(metric(text, "process_resident_memory_bytes")).toBeGreaterThan(1e6);
    expect(metric(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(metric(text, "process_open_fds")).toBeGreaterThan(0);
    expect(metric(text, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
    expect(text).toMatch(/^sova_relay_instances\{session="[0-9a-f]{12}"\} 2$/m);
    for (const fam of [
      "sova_relay_connections_open",
      "sova_relay_registrations_rejected_total",
      "sova_relay_drops_total",
      "sova_relay_disconnects_total",
      "sova_relay_sent_bytes_total",
    ]) {
      expect(families.has(fam)).toBe(true);
    }
  });

  test("every counter of the one table shows in /status, /metrics and the page, probes included", async () => {
    const probe = await Bun.connect({ hostname: "127.0.0.1", port: relay.port, socket: { data() {} } });
    probe.write(new Uint8Array(4)); // what `sova-relay health` sends
    await relay.waitForEvent("probe");
    probe.end();
    const totals = ((await (await get("/status")).json()) as { totals: Record<string, unknown> }).totals;
    const text = await (await get("/metrics")).text();
    const page = await (await get("/")).text();
    for (const spec of Object.values(COUNTERS)) {
      expect(totals).toHaveProperty(spec.status);
      expect(text).toContain(`# TYPE ${spec.metric} counter`);
      expect(page).toContain(`data-counter="${spec.status}"`);
    }
    expect(totals.probes).toBeGreaterThanOrEqual(1);
    expect(metric(text, "sova_relay_probes_total")).toBe(totals.probes as number);
  });

  test("a request without Host (HTTP/1.0, a bare probe) is answered, not a 500", async () => {
    const port = Number(new URL(http.url).port);
    for (const path of ["/healthz", "/status"]) {
      const reply = await new Promise<string>((resolve) => {
        let text = "";
        void Bun.connect({
          hostname: "127.0.0.1",
          port,
          socket: {
            open: (s) => void s.write(`GET ${path} HTTP/1.0\r\n\r\n`),
            data: (_s, d) => {
              text += d.toString();
            },
            close: () => resolve(text),
          },
        });
      });
      expect(reply.split("\r\n")[0], path).toMatch(/^HTTP\/1\.[01] 200/);
    }
  });

  test("only GET and HEAD; anything else 404", async () => {
    expect((await get("/nope")).status).toBe(404);
    const post = await get("/status", { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    const head = await get("/status", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect((await head.text()).length).toBe(0);
  });

  test("no token appears in any response", async () => {
    await pool.register("tokencheck", { token: TOKEN });
    for (const path of ["/", "/status", "/metrics", "/healthz"])
      expect(await (await get(path)).text()).not.toContain(TOKEN);
    expect(relay.logs.join("")).not.toContain(TOKEN);
  });

  test("/healthz: 200 ok while accepting, 503 once shutdown has begun", async () => {
    const ok = await get("/healthz");
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe("ok\n");
    stopping = true;
    try {
      const down = await get("/healthz");
      expect(down.status).toBe(503);
      expect(((await (await get("/status")).json()) as { status: string }).status).toBe("shutting_down");
    } finally {
      stopping = false;
    }
  });
});

/** The windows of the throttled lines here, a minute (http_host_refused) and 10 s (events_limited) by default. */
const WINDOW_MS = 1000;

/** A second HTTP side on the same relay, its lines kept. */
function throttled(options: Partial<HttpOptions> = {}) {
  const lines = logWatcher();
  const log = createLogger({ level: "debug", format: "json", write: (line) => lines.line(line) });
  const side = startHttp(
    { host: "127.0.0.1", port: 0, ...options },
    { relay: relay.server!.relay, version: "0.1.0", startedAt: Date.now(), stopping: () => false },
    log,
  );
  const url = (path: string) => `http://127.0.0.1:${side.port}${path}`;
  const sum = (event: "http_host_refused" | "events_limited", field: string) =>
    lines.events.filter((e) => e.event === event).reduce((n, e) => n + (e[field] as number), 0);
  return { side, lines, url, sum };
}

const rebind = (url: string) => fetch(url, { headers: { Host: "rebind.evil.example" } });

describe("throttled lines: a burst's count is logged when its window ends, with no request after it", () => {
  test("http_host_refused: the first at once, the rest of the burst when the window ends; the counts add up", async () => {
    const { side, lines, url, sum } = throttled({ logWindowMs: WINDOW_MS });
    try {
      const started = performance.now();
      for (let i = 0; i < 4; i++) expect((await rebind(url("/status"))).status).toBe(421);
      expect(await lines.waitForEvent("http_host_refused")).toMatchObject({ host: "rebind.evil.example", count: 1 });
      const tail = await lines.waitForEvent("http_host_refused", { count: 3 }, WINDOW_MS + 5000);
      expect(performance.now() - started).toBeGreaterThanOrEqual(WINDOW_MS);
      expect(tail).toMatchObject({ reason: "host", host: "rebind.evil.example" });
      expect(tail.msg).toContain("(3 since the last such line)");
      expect(sum("http_host_refused", "count")).toBe(4);
      expect(await (await fetch(url("/metrics"))).text()).toContain('sova_relay_http_refused_total{reason="host"} 4');
    } finally {
      side.stop();
    }
  });

  test("http_host_refused: stopping the HTTP side writes what its minute held", async () => {
    const { side, lines, url, sum } = throttled();
    for (let i = 0; i < 3; i++) expect((await rebind(url("/"))).status).toBe(421);
    expect(lines.events.filter((e) => e.event === "http_host_refused")).toHaveLength(1);
    side.stop();
    expect(lines.events.filter((e) => e.event === "http_host_refused").map((e) => e.count)).toEqual([1, 2]);
    expect(sum("http_host_refused", "count")).toBe(3);
  });

  test("events_limited: pages refused past the per-address cap, the burst's tail when the window ends", async () => {
    const { side, lines, url, sum } = throttled({ logWindowMs: WINDOW_MS, maxEventSubscribersPerAddress: 1 });
    const open = await fetch(url("/events"));
    expect(open.status).toBe(200);
    try {
      for (let i = 0; i < 3; i++) {
        const refused = await fetch(url("/events"));
        expect(refused.status).toBe(503);
        await refused.text();
      }
      expect(await lines.waitForEvent("events_limited")).toMatchObject({ refused: 1, cut: 0 });
      const tail = await lines.waitForEvent("events_limited", { refused: 2 }, WINDOW_MS + 5000);
      expect(tail).toMatchObject({ reason: "subscriber_cap", cut: 0 });
      expect(sum("events_limited", "refused")).toBe(3);
      expect(side.events.refused).toBe(3);
    } finally {
      await open.body!.cancel();
      side.stop();
    }
  });
});
