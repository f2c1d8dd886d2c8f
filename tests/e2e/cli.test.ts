/** The command line and configuration: defaults, environment, bad values, signals, health. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import { OPTIONS, VERSION, resolveConfig } from "../../src/host/config.ts";
import { SOVA_PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { connectSleeper } from "../support/peers.ts";
import { startProcess, type RelayHandle } from "../support/relay.ts";
import { FIXTURES, ROOT } from "../support/paths.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];

function run(args: string[], env: Record<string, string> = {}) {
  // A command meant to fail at once that starts a relay instead is killed, not waited on forever.
  const proc = Bun.spawnSync([...SOURCE, ...args], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: 15_000,
  });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

describe("configuration", () => {
  test("defaults are the documented ones", () => {
    const c = resolveConfig([], {});
    expect(c).toMatchObject({
      host: "0.0.0.0",
      port: 9090,
      maxInstances: 40,
      maxInstancesPerSession: 40,
      maxInstancesPerIp: 20,
      maxConnectionsPerIp: 28,
      rateLimit: 1000,
      maxMessageSize: 1048576,
      maxPendingBytes: 8388608,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      expectedVersion: SOVA_PROTOCOL_VERSION,
      tokens: [],
      logLevel: "info",
      logFormat: "text",
    });
    expect(VERSION).toBe("0.1.0");
  });

  test("every option comes from SOVA_RELAY_<NAME>; flags beat the environment", () => {
    const env = {
      SOVA_RELAY_PORT: "7000",
      SOVA_RELAY_MAX_INSTANCES: "5",
      SOVA_RELAY_LOG_FORMAT: "json",
      SOVA_RELAY_IDLE_TIMEOUT: "30",
    };
    expect(resolveConfig([], env)).toMatchObject({
      port: 7000,
      maxInstances: 5,
      logFormat: "json",
      idleTimeoutMs: 30_000,
    });
    expect(resolveConfig(["--port", "7001", "--max-instances=6"], env)).toMatchObject({ port: 7001, maxInstances: 6 });
    expect(OPTIONS.length).toBeGreaterThan(10);
  });

  test("the seed's SOVA_MAX_INSTANCES, SOVA_RATE_LIMIT and RUST_LOG are honoured, below ours", () => {
    expect(
      resolveConfig([], { SOVA_MAX_INSTANCES: "3", SOVA_RATE_LIMIT: "10", RUST_LOG: "sova_relay=debug,tokio=warn" }),
    ).toMatchObject({
      maxInstances: 3,
      rateLimit: 10,
      logLevel: "debug",
    });
    expect(resolveConfig([], { RUST_LOG: "warn" }).logLevel).toBe("warn");
    expect(resolveConfig([], { SOVA_MAX_INSTANCES: "3", SOVA_RELAY_MAX_INSTANCES: "4" }).maxInstances).toBe(4);
  });

  test("tokens: --token repeats, SOVA_RELAY_TOKENS is comma-separated, --token-file one a line", () => {
    const [a, b, x, y, z] = ["a", "b", "x", "y", "z"].map((t) => `${t}-ensemble-token-Kp2W`) as [
      string,
      string,
      string,
      string,
      string,
    ];
    expect(resolveConfig(["--token", a, "--token", b], {}).tokens).toEqual([a, b]);
    expect(resolveConfig([], { SOVA_RELAY_TOKENS: `${x}, ${y},,${z}` }).tokens).toEqual([x, y, z]);
    const dir = mkdtempSync(join(tmpdir(), "sova-relay-"));
    const file = join(dir, "tokens");
    writeFileSync(file, "# ensembles\nfirst-ensemble-Wq7Lz\n\nsecond-ensemble-Wq7Lz\n");
    expect(resolveConfig(["--token-file", file, "--token", "third-ensemble-Wq7Lz"], {}).tokens).toEqual([
      "third-ensemble-Wq7Lz",
      "first-ensemble-Wq7Lz",
      "second-ensemble-Wq7Lz",
    ]);
    expect(resolveConfig([], { SOVA_RELAY_TOKEN_FILE: file }).tokens).toEqual([
      "first-ensemble-Wq7Lz",
      "second-ensemble-Wq7Lz",
    ]);
  });

  test("--allow/--deny repeat (citty alone keeps only the last); their environment forms are comma-separated", () => {
    const c = resolveConfig(
      ["--allow", "10.0.0.0/8", "--port", "1", "--allow=192.168.0.0/16", "--deny", "10.1.0.0/16"],
      {},
    );
    expect(c.allow.length).toBe(2);
    expect(c.deny.length).toBe(1);
    expect(resolveConfig([], { SOVA_RELAY_ALLOW: "10.0.0.0/8, ::1/128" }).allow.length).toBe(2);
  });

  test("seconds on the command line, milliseconds in the configuration; --state-reset is a switch", () => {
    const c = resolveConfig(["--handshake-timeout", "0.5", "--state-reset"], { SOVA_RELAY_HISTORY_AGE: "60" });
    expect(c).toMatchObject({
      handshakeTimeoutMs: 500,
      historyAgeMs: 60_000,
      shutdownTimeoutMs: 5000,
      stateReset: true,
    });
    expect(resolveConfig([], { SOVA_RELAY_STATE_RESET: "1" }).stateReset).toBe(true);
    expect(resolveConfig([], {}).stateReset).toBe(false);
  });
});

describe("bad values: one clear line naming the option, exit 2, no stack trace", () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ["port out of range", ["--port", "70000"], {}, /--port: '70000'/],
    ["negative rate", ["--rate-limit", "-1"], {}, /--rate-limit/],
    ["not a number", ["--max-instances", "abc"], {}, /--max-instances: 'abc'/],
    ["fractional instances", ["--max-instances", "2.5"], {}, /--max-instances/],
    ["bad log level", ["--log-level", "loud"], {}, /--log-level: 'loud'.*error, warn, info, debug, trace/],
    ["unknown option", ["--prot", "9090"], {}, /unknown option '--prot'/],
    ["an unknown short option, as typed", ["-t", "x"], {}, /unknown option '-t'/],
    ["missing value", ["--port"], {}, /--port needs a value/],
    ["a value flag negated", ["--no-port"], {}, /--port needs a value/],
    ["bad environment value", [], { SOVA_RELAY_PORT: "abc" }, /--port \(from SOVA_RELAY_PORT\): 'abc'/],
    ["an argument that is no option", ["9090"], {}, /unexpected argument '9090'/],
    ["an unknown command's options", ["history", "shred"], {}, /Unknown command/],
    ["bad health timeout", ["health", "--timeout", "soon"], {}, /--timeout: 'soon'/],
    [
      "bad state-reset in the environment",
      [],
      { SOVA_RELAY_STATE_RESET: "maybe" },
      /--state-reset \(from SOVA_RELAY_STATE_RESET\)/,
    ],
    [
      "unreadable token file",
      ["--token-file", "/nonexistent/tokens"],
      {},
      /cannot read --token-file '\/nonexistent\/tokens'/,
    ],
  ];
  for (const [name, args, env, pattern] of cases) {
    test(name, () => {
      const r = run(args, env);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }
});

describe("a token setting that yields no token stops the relay: never an open relay by mistake", () => {
  const dir = mkdtempSync(join(tmpdir(), "sova-relay-tokens-"));
  const emptyFile = join(dir, "empty");
  const commentsOnly = join(dir, "comments");
  writeFileSync(emptyFile, "");
  writeFileSync(commentsOnly, "# the ensemble's token goes here\n\n   \n");
  const commaFile = join(dir, "comma");
  writeFileSync(commaFile, "Qw83LzXk2vR9tYp1mNb,Zx7cV4bN1mQw8eRt5y\n");
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ["--token last, with no value", ["--token"], {}, /option --token needs a value/],
    ["--token followed by another option", ["--token", "--port", "0"], {}, /option --token needs a value/],
    ["--token ''", ["--token", ""], {}, /option --token needs a value/],
    ["--token=", ["--token="], {}, /option --token needs a value/],
    ["--token ,", ["--token", ","], {}, /option --token needs a value/],
    ["--token of blanks", ["--token", "   "], {}, /option --token needs a value/],
    ["SOVA_RELAY_TOKENS empty", [], { SOVA_RELAY_TOKENS: "" }, /SOVA_RELAY_TOKENS is set but empty/],
    [
      "SOVA_RELAY_TOKENS a lone comma",
      [],
      { SOVA_RELAY_TOKENS: "," },
      /--token \(from SOVA_RELAY_TOKENS\) needs a value/,
    ],
    ["SOVA_RELAY_TOKEN_FILE empty", [], { SOVA_RELAY_TOKEN_FILE: "" }, /SOVA_RELAY_TOKEN_FILE is set but empty/],
    ["an empty token file", ["--token-file", emptyFile], {}, /--token-file .*empty holds no token/],
    ["a token file of comments", ["--token-file", commentsOnly], {}, /--token-file .*comments holds no token/],
    ["a token file line with a comma", ["--token-file", commaFile], {}, /a token holds a comma/],
    ["--allow ''", ["--allow", ""], {}, /option --allow needs a value/],
    ["--no-allow", ["--no-allow"], {}, /option --allow needs a value/],
    ["--no-token", ["--no-token"], {}, /option --token needs a value/],
    [
      "a flag given none before --token",
      ["--host", "--token", "SECRETSECRETsecret123"],
      {},
      /option --host needs a value/,
    ],
    ["a stray token", ["SECRETSECRETsecret123"], {}, /unexpected argument of 21 characters, not shown/],
    ["SOVA_RELAY_DENY empty", [], { SOVA_RELAY_DENY: "" }, /SOVA_RELAY_DENY is set but empty/],
  ];
  for (const [name, args, env, pattern] of cases) {
    test(name, () => {
      const r = run(["--port", "0", "--http-port", "0", ...args], env);
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(pattern);
      expect(r.stdout + r.stderr).not.toMatch(/open session|listening|SECRETSECRET/i);
    });
  }
});

describe("settings that nothing reads stop the command: exit 2, one line naming what was meant", () => {
  const VALUE = "a-token-someone-meant-to-protect";
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    [
      "SOVA_RELAY_TOKEN (spelled like --token) for the relay: never an open relay",
      ["--port", "any", "--http-port", "0"],
      { SOVA_RELAY_TOKEN: VALUE },
      /^sova-relay: SOVA_RELAY_TOKEN is not a setting of `sova-relay`; did you mean SOVA_RELAY_TOKENS\?/,
    ],
    [
      "the tunnel's setting given to the relay",
      ["--port", "any", "--http-port", "0"],
      { SOVA_RELAY_TO: "wss://relay.example.org/relay" },
      /SOVA_RELAY_TO is read by `sova-relay tunnel`, not by `sova-relay`/,
    ],
    [
      "the relay's token given to the tunnel",
      ["tunnel", "--listen", "127.0.0.1:0", "--to", "ws://127.0.0.1:9/relay"],
      { SOVA_RELAY_TOKENS: VALUE },
      /SOVA_RELAY_TOKENS is read by `sova-relay`, not by `sova-relay tunnel`/,
    ],
    [
      "a typo for health",
      ["health", "--timeout", "0.2"],
      { SOVA_RELAY_HEALTH_TIMOUT: "1" },
      /did you mean SOVA_RELAY_HEALTH_TIMEOUT\?/,
    ],
    [
      "a typo for history clear",
      ["history", "clear"],
      { SOVA_RELAY_STATE_DIRECTORY: "/tmp" },
      /did you mean SOVA_RELAY_STATE_DIR\?/,
    ],
  ];
  for (const [name, args, env, pattern] of cases) {
    test(name, () => {
      const r = run(args, env);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr + r.stdout).not.toContain(VALUE);
      expect(r.stdout).not.toContain("Listening");
    });
  }

  test("the container image's environment: the relay starts with it, and health finds the relay from it", async () => {
    const image = readFileSync(join(ROOT, "Dockerfile.prebuilt"), "utf8");
    const env: Record<string, string> = { SOVA_RELAY_STATE_DIR: mkdtempSync(join(tmpdir(), "sova-relay-")) };
    for (const [, name, value] of image.matchAll(/\b(SOVA_RELAY_[A-Z0-9_]+)=(\S+)/g))
      if (name !== "SOVA_RELAY_STATE_DIR") env[name!] = value!;
    expect(Object.keys(env).length).toBeGreaterThan(10);
    // The flags startProcess adds keep it on 127.0.0.1 and a free port; the rest is the image's.
    const relay = await startProcess(SOURCE)([], env);
    try {
      const r = run(["health", "--timeout", "3"], { ...env, SOVA_RELAY_PORT: String(relay.port) });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`healthy: relay answering at 127.0.0.1:${relay.port}`);
    } finally {
      await relay.stop();
    }
  });
});

/**
 * A sender and a registered peer that never reads, with `updates` half-megabyte
 * updates queued for it at the relay: a shutdown then has something to flush.
 */
async function backlogForSleeper(relay: RelayHandle, updates: number) {
  const sender = await connect({ port: relay.port });
  await sender.register({ name: "sender" });
  const sleeper = await connectSleeper(relay.port);
  await relay.waitForEvent("registered", { instance: "sleeper" });
  for (let i = 0; i < updates; i++) sender.sendUpdate(new Uint8Array(500_000), BigInt(i));
  await sender.ping(1n, 15000);
  return { sender, sleeper };
}

describe("the CLI", () => {
  test("--version prints the version; --help lists every option with its environment name", () => {
    expect(run(["--version"]).stdout.trim()).toStartWith(`sova-relay ${VERSION} (commit `);
    const help = run(["--help"]).stdout;
    for (const flag of [
      "--host",
      "--port",
      "--max-instances",
      "--rate-limit",
      "--max-message-size",
      "--max-pending-bytes",
      "--handshake-timeout",
      "--idle-timeout",
      "--expected-version",
      "--token",
      "--token-file",
      "--log-level",
      "--log-format",
    ]) {
      expect(help).toContain(flag);
    }
    expect(help).toContain("SOVA_RELAY_PORT");
    // Into a pipe, wrapped to 100 columns (citty's table was 350 wide), each description under its flag.
    for (const command of [[], ["tunnel"], ["replay"], ["watch", "enable"]]) {
      const lines = run([...command, "--help"]).stdout.split("\n");
      expect(lines.filter((l) => l.length > 100)).toEqual([]);
    }
    expect(help).toMatch(/^ {2}--max-instances=<max_instances>\n {6}Registered instances allowed in the whole relay/m);
  });

  test("a port already in use: one line saying so, exit 2 (a setting to change); for TLS and HTTP too", () => {
    // Another relay's TLS listener has SO_REUSEPORT (for reloads), which once let a second relay share its port.
    // (An options object: Bun's types leave reusePort out of a literal's, as in src/transport/tls.ts.)
    const options = { hostname: "127.0.0.1", port: 0, reusePort: true, socket: { data() {} } };
    const blocker = Bun.listen(options);
    const tls = ["--tls-cert", join(FIXTURES, "tls", "test-a.crt"), "--tls-key", join(FIXTURES, "tls", "test-a.key")];
    const busy = String(blocker.port);
    try {
      const cases: Array<[string[], string]> = [
        [["--port", busy, "--http-port", "0"], "--port"],
        [["--port", "0", "--tls-port", busy, ...tls, "--http-port", "0"], "--tls-port"],
        [["--port", "0", "--http-port", busy, "--http-host", "127.0.0.1"], "--http-port (0: none)"],
      ];
      for (const [flags, flag] of cases) {
        const r = run(["--host", "127.0.0.1", ...flags]);
        const what = flag.startsWith("--http") ? " for HTTP" : "";
        expect({ flags, code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({
          flags,
          code: 2,
          stderr: `sova-relay: cannot listen${what} on 127.0.0.1:${busy}: the port is in use (another relay?); choose another ${flag}\n`,
          stdout: "",
        });
      }
    } finally {
      blocker.stop(true);
    }
  });
});

describe("running relay process", () => {
  const TOKEN = "tok-Zq8-never-logged";
  let relay: RelayHandle;
  beforeAll(async () => {
    relay = await startProcess(SOURCE)(["--token", TOKEN, "--log-format", "json"]);
  });
  afterAll(async () => {
    relay.process?.kill("SIGKILL");
  });

  test("json logs: one object a line with time, level and event; no token anywhere", async () => {
    const good = await connect({ port: relay.port });
    await good.register({ name: "good", token: TOKEN });
    const bad = await connect({ port: relay.port });
    await expect(bad.register({ name: "bad", token: `${TOKEN}x` })).rejects.toThrow("Invalid session token");
    await relay.waitForEvent("registration_rejected");
    for (const line of relay.logs) {
      const obj = JSON.parse(line);
      expect(typeof obj.time).toBe("string");
      expect(["error", "warn", "info", "debug", "trace"]).toContain(obj.level);
      expect(typeof obj.event).toBe("string");
    }
    expect(relay.logs.join("")).not.toContain(TOKEN);
    expect(relay.logs.some((l) => l.includes('"session":"'))).toBe(true);
    good.close();
  });

  test("health: exit 0 against a relay, without registering; exit 1 with a reason against nothing", async () => {
    const ok = Bun.spawnSync([...SOURCE, "health", "--host", "127.0.0.1", "--port", String(relay.port)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(ok.exitCode).toBe(0);
    await relay.waitForEvent("probe");
    expect(relay.events.filter((e) => e.event === "probe").every((e) => e.level === "debug")).toBe(true);
    const registrations = relay.events.filter((e) => e.event === "registered" || e.event === "registration_rejected");
    expect(registrations.some((e) => JSON.stringify(e).includes("health"))).toBe(false);
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const deadPort = closed.port;
    closed.stop(true);
    const bad = Bun.spawnSync(
      [...SOURCE, "health", "--host", "127.0.0.1", "--port", String(deadPort), "--timeout", "1"],
      { stdout: "pipe", stderr: "pipe" },
    );
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString().trim().split("\n").length).toBe(1);
    expect(bad.stderr.toString()).toContain("unhealthy");
  });
});

describe("shutdown on SIGTERM", () => {
  test("with instances exchanging updates: queued frames go out, everyone is closed, exit 0", async () => {
    const relay = await startProcess(SOURCE)([]);
    const a = await connect({ port: relay.port });
    await a.register({ name: "a" });
    const b = await connect({ port: relay.port });
    await b.register({ name: "b" });
    for (let i = 0; i < 200; i++) a.sendUpdate(new Uint8Array(1000).fill(i & 0xff), BigInt(i));
    for (let i = 0; i < 200; i++) expect((await b.next("StateBroadcast")).timestamp).toBe(BigInt(i));
    relay.process!.kill("SIGTERM");
    await Promise.all([a.closed, b.closed]);
    expect(await relay.process!.exited).toBe(0);
    await relay.waitForEvent("shutdown", { reason: "SIGTERM", instances: 2 });
    await relay.waitForEvent("shutdown_complete");
  });

  test("a second signal exits at once", async () => {
    const relay = await startProcess(SOURCE)(["--shutdown-timeout", "30", "--max-pending-bytes", "100000000"]);
    // A peer that never reads keeps the flush busy, so only the second signal can end it quickly.
    const { sender, sleeper } = await backlogForSleeper(relay, 60);
    relay.process!.kill("SIGTERM");
    await relay.waitForEvent("shutdown");
    relay.process!.kill("SIGTERM");
    expect(await relay.process!.exited).toBe(1);
    sleeper.terminate();
    sender.close();
    // Queuing 30 MB for the sleeper takes seconds on a busy machine.
  }, 30_000);
});

describe("HTTP during shutdown", () => {
  test("/healthz answers 503 once SIGTERM has begun the shutdown", async () => {
    const relay = await startProcess(SOURCE)([
      "--http-port",
      "any",
      "--shutdown-timeout",
      "3",
      "--max-pending-bytes",
      "100000000",
    ]);
    const url = `http://127.0.0.1:${relay.httpPort}/healthz`;
    expect((await fetch(url)).status).toBe(200);
    // A peer that never reads keeps the flush going, so the shutdown lasts long enough to look at.
    const { sleeper } = await backlogForSleeper(relay, 40);
    relay.process!.kill("SIGTERM");
    await relay.waitForEvent("shutdown");
    const res = await fetch(url);
    expect(res.status).toBe(503);
    expect(await res.text()).toBe("shutting down\n");
    expect(await relay.process!.exited).toBe(0);
    sleeper.terminate();
  }, 20000);
});
