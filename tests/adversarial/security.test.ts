/**
 * Safe on the open internet: TLS beside plain TCP, certificate reload on SIGHUP,
 * --allow/--deny for IPv4 and IPv6, the per-address cap, the failed-registration
 * cool-down, the byte budget, the audit log, and no token anywhere.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import { frameOf } from "../../src/protocol/framing.ts";
import { encodeMessage } from "../../src/protocol/messages.ts";
import { cleanupAfterEach, drained, drainedPastRateLimit } from "../support/peers.ts";
import { startInProcess, startProcess } from "../support/relay.ts";
import { ROOT, TLS_DIR } from "../support/paths.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const TLS = TLS_DIR;
const CERT_A = join(TLS, "test-a.crt");
const KEY_A = join(TLS, "test-a.key");
const CERT_B = join(TLS, "test-b.crt");
const KEY_B = join(TLS, "test-b.key");
const CA_A = readFileSync(CERT_A, "utf8");
const CA_B = readFileSync(CERT_B, "utf8");

const keep = cleanupAfterEach();

/** A raw connection: resolves true if the relay closed it before we sent anything. */
async function closedAtOnce(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 2000);
    void Bun.connect({
      hostname: host,
      port,
      socket: {
        data() {},
        close() {
          clearTimeout(timer);
          resolve(true);
        },
        error() {},
        connectError() {
          clearTimeout(timer);
          resolve(true);
        },
      },
    });
  });
}

describe("TLS", () => {
  test("plain and TLS instances share a session; the certificate is checked", async () => {
    const relay = keep(await startInProcess(["--tls-port", "0", "--tls-cert", CERT_A, "--tls-key", KEY_A]));
    const plain = keep(await connect({ port: relay.server!.port! }));
    await plain.register({ name: "plain" });
    const secure = keep(await connect({ port: relay.tlsPort!, tls: { ca: CA_A, serverName: "localhost" } }));
    const r = await secure.register({ name: "secure" });
    expect(r.current_instances.map((i) => i.name)).toEqual(["plain"]);
    plain.sendUpdate(Uint8Array.of(1), 1n);
    expect((await secure.next("StateBroadcast")).source_instance_name).toBe("plain");
    secure.sendUpdate(Uint8Array.of(2), 2n);
    expect((await plain.next("StateBroadcast")).source_instance_name).toBe("secure");
    // A client that trusts another certificate does not get in.
    const refused = await connect({ port: relay.tlsPort!, tls: { ca: CA_B, serverName: "localhost" } }).then(
      async (wrong) => {
        keep(wrong);
        return wrong.register({ name: "wrong" }).then(
          () => false,
          () => true,
        );
      },
      () => true,
    );
    expect(refused).toBe(true);
  });

  test("--port 0 with TLS leaves only the TLS listener", async () => {
    const relay = keep(
      await startInProcess(["--port", "0", "--tls-port", "0", "--tls-cert", CERT_A, "--tls-key", KEY_A]),
    );
    expect(relay.server!.port).toBeNull();
    const c = keep(await connect({ port: relay.tlsPort!, tls: { ca: CA_A, serverName: "localhost" } }));
    expect((await c.register({ name: "only-tls" })).success).toBe(true);
  });

  test("missing or bad certificate files: one line, exit 2", () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ["--tls-port", "0", "--tls-cert", "/nonexistent.crt", "--tls-key", KEY_A],
        /cannot read --tls-cert '\/nonexistent\.crt' \(ENOENT\)/,
      ],
      [["--tls-port", "0", "--tls-cert", CERT_A, "--tls-key", KEY_B], /invalid TLS certificate or key/],
      [
        ["--tls-port", "0", "--tls-cert", join(ROOT, "package.json"), "--tls-key", KEY_A],
        /invalid TLS certificate or key/,
      ],
      [["--tls-port", "0"], /--tls-port needs --tls-cert and --tls-key/],
    ];
    for (const [args, pattern] of cases) {
      const r = Bun.spawnSync([...SOURCE, "--port", "0", "--http-port", "0", ...args], {
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(r.exitCode).toBe(2);
      const lines = r.stderr.toString().trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(pattern);
    }
  });

  test("SIGHUP reloads the certificate; connected instances stay connected", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-tls-"));
    const cert = join(dir, "relay.crt");
    const key = join(dir, "relay.key");
    copyFileSync(CERT_A, cert);
    copyFileSync(KEY_A, key);
    const relay = keep(await startProcess(SOURCE)(["--tls-port", "0", "--tls-cert", cert, "--tls-key", key]));
    const tlsPort = relay.tlsPort!;
    const before = keep(await connect({ port: tlsPort, tls: { ca: CA_A, serverName: "localhost" } }));
    await before.register({ name: "before" });
    copyFileSync(CERT_B, cert);
    copyFileSync(KEY_B, key);
    relay.process!.kill("SIGHUP");
    await relay.waitForEvent("tls_reloaded");
    const after = keep(await connect({ port: tlsPort, tls: { ca: CA_B, serverName: "localhost" } }));
    const r = await after.register({ name: "after" });
    expect(r.current_instances.map((i) => i.name)).toEqual(["before"]);
    after.sendUpdate(Uint8Array.of(9), 9n);
    expect((await before.next("StateBroadcast")).timestamp).toBe(9n);
    expect(before.isClosed).toBe(false);
  });
});

describe("access control", () => {
  test("--deny closes an IPv4 address at once; IPv6 ::1 still gets in; logged once a minute", async () => {
    const relay = keep(await startInProcess(["--host", "::", "--deny", "127.0.0.0/8"]));
    const port = relay.server!.port!;
    for (let i = 0; i < 3; i++) expect(await closedAtOnce("127.0.0.1", port)).toBe(true);
    const v6 = keep(await connect({ host: "::1", port }));
    expect((await v6.register({ name: "v6" })).success).toBe(true);
    await relay.waitForEvent("connection_refused", { reason: "denied" });
    expect(relay.events.filter((e) => e.event === "connection_refused" && e.reason === "denied").length).toBe(1);
    expect(relay.server!.relay.stats.connectionsRefused).toBe(3);
  });

  test("--allow admits only its ranges, for IPv6 as for IPv4", async () => {
    const relay = keep(await startInProcess(["--host", "::", "--allow", "::1/128"]));
    const port = relay.server!.port!;
    expect(await closedAtOnce("127.0.0.1", port)).toBe(true);
    const v6 = keep(await connect({ host: "::1", port }));
    expect((await v6.register({ name: "v6" })).success).toBe(true);
    const relay4 = keep(await startInProcess(["--allow", "127.0.0.1/32"]));
    const v4 = keep(await connect({ port: relay4.port }));
    expect((await v4.register({ name: "v4" })).success).toBe(true);
  });

  test("--max-connections-per-ip: the connection past the cap is closed; a slot frees when one leaves", async () => {
    const relay = keep(await startInProcess(["--max-connections-per-ip", "2"]));
    const a = keep(await connect({ port: relay.port }));
    await a.register({ name: "a" });
    const b = keep(await connect({ port: relay.port }));
    await b.register({ name: "b" });
    expect(await closedAtOnce("127.0.0.1", relay.port)).toBe(true);
    a.close();
    await b.next("InstanceDisconnected");
    const c = keep(await connect({ port: relay.port }));
    expect((await c.register({ name: "c" })).success).toBe(true);
  });

  test(`too many failed registrations: \
every registration from the address is refused for the cool-down, right token or not`, async () => {
    const TOKEN = "right-token-for-the-cooldown";
    const relay = keep(
      await startInProcess([
        "--token",
        TOKEN,
        "--max-failed-registrations",
        "3",
        "--failed-registration-cooldown",
        "60",
      ]),
    );
    for (let i = 0; i < 3; i++) {
      const guess = keep(await connect({ port: relay.port }));
      await expect(guess.register({ name: `g${i}`, token: `guess-number-${i}-wrong` })).rejects.toThrow(
        "Invalid session token",
      );
      await guess.closed;
    }
    await relay.waitForEvent("cooldown_started");
    // The same answer for the right token and a wrong one: a guess cannot tell.
    for (const token of [TOKEN, "guess-number-3-wrong"]) {
      const c = keep(await connect({ port: relay.port }));
      await expect(c.register({ name: "late", token })).rejects.toThrow(
        /^Too many failed registrations from this address; try again in (59|60) s$/,
      );
    }
  });
});

describe("byte budget", () => {
  test("--rate-limit-bytes drops past the budget, with one Error per window", async () => {
    const relay = keep(await startInProcess(["--rate-limit-bytes", "10000"]));
    const a = keep(await connect({ port: relay.port }));
    await a.register({ name: "heavy" });
    const b = keep(await connect({ port: relay.port }));
    await b.register({ name: "listener" });
    // Each update is about 3100 bytes on the wire: three fit in 10000, the fourth does not.
    for (let i = 0; i < 6; i++) a.sendUpdate(new Uint8Array(3000).fill(1), BigInt(i));
    expect((await a.next("Error")).message).toBe("Rate limit exceeded for instance heavy");
    for (let i = 0; i < 3; i++) expect((await b.next("StateBroadcast")).timestamp).toBe(BigInt(i));
    expect(await drainedPastRateLimit(a)).toEqual([]);
    expect(await drained(b)).toEqual([]);
    await relay.waitForEvent("rate_limited", { instance: "heavy" });
  });
});

describe("audit log and secrets", () => {
  test(`security events go to --audit-log as JSON with stable names; \
SIGHUP reopens it; no token anywhere`, async () => {
    const TOKEN = "s3cr3t-ensemble-Qz7";
    const dir = mkdtempSync(join(tmpdir(), "sova-audit-"));
    const auditPath = join(dir, "audit.log");
    const relay = keep(
      await startProcess(SOURCE)([
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--audit-log",
        auditPath,
        "--token",
        TOKEN,
        "--http-port",
        "any",
        "--tls-port",
        "0",
        "--tls-cert",
        CERT_A,
        "--tls-key",
        KEY_A,
        "--rate-limit",
        "2",
      ]),
    );
    const good = keep(await connect({ port: relay.port }));
    await good.register({ name: "good", token: TOKEN });
    const bad = keep(await connect({ port: relay.port }));
    await expect(bad.register({ name: "bad", token: `${TOKEN}-wrong` })).rejects.toThrow("Invalid session token");
    for (let i = 0; i < 4; i++) good.send({ type: "Ping", timestamp: BigInt(i) });
    await good.next("Error");
    // A TLS handshake that fails: plain bytes to the TLS port.
    const tlsPort = relay.tlsPort!;
    const garbage = await Bun.connect({
      hostname: "127.0.0.1",
      port: tlsPort,
      socket: { data() {}, close() {}, error() {} },
    });
    garbage.write(frameOf(encodeMessage({ type: "Ping", timestamp: 1n })));
    await relay.waitForEvent("tls_handshake_failed");
    garbage.terminate();

    const pages = await Promise.all(
      ["/", "/status", "/metrics", "/healthz"].map(async (p) =>
        (await fetch(`http://127.0.0.1:${relay.httpPort}${p}`)).text(),
      ),
    );
    renameSync(auditPath, `${auditPath}.1`); // logrotate moves it away...
    relay.process!.kill("SIGHUP"); // ...and tells the relay
    await relay.waitForEvent("tls_reloaded");
    good.close();
    await relay.waitForEvent("disconnected");
    await relay.stop();

    const rotated = readFileSync(`${auditPath}.1`, "utf8");
    const fresh = readFileSync(auditPath, "utf8");
    const events = (text: string) =>
      text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).event as string);
    for (const e of [
      "connection_accepted",
      "registered",
      "registration_rejected",
      "rate_limited",
      "session_created",
      "tls_handshake_failed",
    ]) {
      expect(events(rotated)).toContain(e);
    }
    for (const e of ["tls_reloaded", "disconnected", "session_emptied", "shutdown", "shutdown_complete"])
      expect(events(fresh)).toContain(e);
    for (const line of [...rotated.trim().split("\n"), ...fresh.trim().split("\n")]) {
      const obj = JSON.parse(line);
      expect(typeof obj.time).toBe("string");
      expect(typeof obj.event).toBe("string");
    }
    expect(rotated).toMatch(/"ip":"127\.0\.0\.1"/);
    for (const text of [rotated, fresh, relay.logs.join(""), ...pages]) {
      expect(text).not.toContain(TOKEN);
    }
  }, 30000);
});
