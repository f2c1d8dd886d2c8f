/**
 * `sova-relay tunnel`: plain TCP in, WebSocket or TLS out. Many local
 * connections through one tunnel, the far side going away, and every way the
 * far side can be unreachable, each as one clear line.
 */
import { unusedPort } from "../support/ports.ts";
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { connect } from "../../src/client/client.ts";
import { describeFailure, parseTarget } from "../../src/tunnel/tunnel.ts";
import { cleanupAfterEach } from "../support/peers.ts";
import { ClientPool, logWatcher, startInProcess, type RelayHandle } from "../support/relay.ts";
import { TEST_CA, TLS_DIR, TLS_FLAGS, tunnelTo, type TunnelHandle } from "../support/transport.ts";
import { ROOT } from "../support/paths.ts";

const keep = cleanupAfterEach();

async function relayWith(flags: string[]): Promise<RelayHandle> {
  return keep(await startInProcess(flags));
}

/** The error lines a tunnel logged; a stack trace would show as lines starting with "at". */
function errorLines(t: TunnelHandle): string[] {
  return t.logs.filter((l) => / ERROR /.test(l) || /^\s+at /.test(l));
}

/** Connects through the tunnel and waits for the tunnel to close the local side. */
async function refusedLocally(t: TunnelHandle): Promise<void> {
  const c = await connect({ port: t.port });
  await c.closed;
}

describe("tunnel: carrying instances", () => {
  test("one tunnel serves any number of local connections; they meet instances connected directly", async () => {
    const relay = await relayWith(["--http-port", "any"]);
    const tunnel = tunnelTo(`ws://127.0.0.1:${relay.httpPort}/relay`);
    const direct = new ClientPool(() => relay.port);
    const through = new ClientPool(() => tunnel.port);
    try {
      const sender = await direct.register("direct");
      const players = await Promise.all(Array.from({ length: 6 }, (_, i) => through.register(`player-${i}`)));
      expect(tunnel.connections).toBe(6);
      sender.sendUpdate(Uint8Array.of(5), 5n);
      for (const p of players) expect((await p.next("StateBroadcast")).timestamp).toBe(5n);
      players[0]!.sendUpdate(Uint8Array.of(6), 6n);
      expect((await sender.next("StateBroadcast")).source_instance_name).toBe("player-0");
      await tunnel.waitForLog(/Connection 6: carried to ws:\/\/127\.0\.0\.1/);
    } finally {
      through.closeAll();
      direct.closeAll();
      tunnel.stop();
    }
  });

  for (const scheme of ["ws", "tls"] as const) {
    test(`${scheme}: a relay without resumption going away: 'Connection lost', then the local connection closes`, async () => {
      const flags = ["--resume-window", "0", ...(scheme === "ws" ? ["--http-port", "any"] : TLS_FLAGS)];
      const relay = await startInProcess(flags);
      const tunnel =
        scheme === "ws"
          ? tunnelTo(`ws://127.0.0.1:${relay.httpPort}/relay`)
          : tunnelTo(`tls://localhost:${relay.tlsPort}`, { ca: TEST_CA });
      try {
        const c = await connect({ port: tunnel.port });
        await c.register({ name: `leaving-${scheme}` });
        await relay.stop();
        expect((await c.next("Error")).message).toBe("Connection lost");
        await c.closed;
        expect(c.isClosed).toBe(true);
        await tunnel.waitForLog(/Connection 1 closed \(\d+ bytes up, \d+ down\)/);
      } finally {
        tunnel.stop();
      }
    });
  }

  test("a relay that stops while resumption is on: the local connection stays while the tunnel resumes", async () => {
    const relay = await startInProcess(["--http-port", "any"]);
    const tunnel = tunnelTo(`ws://127.0.0.1:${relay.httpPort}/relay`);
    try {
      const c = await connect({ port: tunnel.port });
      await c.register({ name: "staying" });
      await tunnel.waitForLog(/keeps this player's session for 30 s/);
      await relay.stop();
      await tunnel.waitForLog(/Sova's connection stays open, resuming/);
      await tunnel.waitForLog(/resuming through ws:\/\/127\.0\.0\.1:\d+\/relay \(attempt 2,/);
      expect(c.isClosed).toBe(false);
      // Nudged as the relay would, so a waiting edit can leave.
      expect((await c.next("Pong")).type).toBe("Pong");
      c.close();
    } finally {
      tunnel.stop();
    }
  });

  test("the instance leaving closes the upstream: the relay sees it go", async () => {
    const relay = await relayWith(["--http-port", "any"]);
    const tunnel = tunnelTo(`ws://127.0.0.1:${relay.httpPort}/relay`);
    const pool = new ClientPool(() => relay.port);
    try {
      const watcher = await pool.register("watcher");
      const c = await connect({ port: tunnel.port });
      await c.register({ name: "goes" });
      c.close();
      expect((await watcher.next("InstanceDisconnected")).instance_name).toBe("goes");
    } finally {
      pool.closeAll();
      tunnel.stop();
    }
  });
});

test("tunnel: a quiet WebSocket is pinged, so a proxy's read timeout does not end a silent session", async () => {
  let pinged!: () => void;
  const ping = new Promise<void>((r) => (pinged = r));
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req, s) => (s.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 })),
    websocket: { message() {}, ping: () => pinged() },
  });
  const tunnel = tunnelTo(`ws://127.0.0.1:${server.port}/relay`, { pingIntervalMs: 20 });
  try {
    const c = await connect({ port: tunnel.port });
    await ping;
    c.close();
  } finally {
    tunnel.stop();
    void server.stop(true);
  }
});

describe("tunnel: one clear line when the far side cannot be reached", () => {
  test("tls:// with a certificate nobody vouches for: one line naming the certificate, no stack trace", async () => {
    const relay = await relayWith(TLS_FLAGS);
    const tunnel = tunnelTo(`tls://localhost:${relay.tlsPort}`);
    try {
      await refusedLocally(tunnel);
      await tunnel.waitForLog(/certificate is not trusted/);
      const errors = errorLines(tunnel);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(
        new RegExp(
          String.raw`localhost:\d+'s certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT: .*\);` +
            " for a private CA pass --ca FILE; closing the local connection",
        ),
      );
    } finally {
      tunnel.stop();
    }
  });

  test("wss:// with the wrong --ca: one line, pointing at --ca", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: {
        cert: readFileSync(join(TLS_DIR, "test-a.crt"), "utf8"),
        key: readFileSync(join(TLS_DIR, "test-a.key"), "utf8"),
      },
      fetch: (req, s) => (s.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 })),
      websocket: { message() {} },
    });
    const tunnel = tunnelTo(`wss://localhost:${server.port}/relay`, {
      ca: readFileSync(join(TLS_DIR, "test-b.crt"), "utf8"),
    });
    try {
      await refusedLocally(tunnel);
      await tunnel.waitForLog(/certificate is not trusted/);
      const errors = errorLines(tunnel);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain("; check --ca");
    } finally {
      tunnel.stop();
      void server.stop(true);
    }
  });

  test("a name that does not resolve, a refused port and a refused upgrade: one line each", async () => {
    const relay = await relayWith(["--http-port", "any"]);
    const cases: Array<[string, RegExp]> = [
      [
        "ws://no-such-host.invalid/relay",
        /cannot resolve no-such-host\.invalid \((ENOTFOUND|EAI_AGAIN|EAI_NONAME|DNS\w*)\)/,
      ],
      [`tcp://127.0.0.1:${unusedPort()}`, /connection refused by 127\.0\.0\.1:\d+/],
      [`ws://127.0.0.1:${relay.httpPort}/not-relay`, /refused the WebSocket upgrade with HTTP 404/],
    ];
    for (const [to, expected] of cases) {
      const tunnel = tunnelTo(to);
      try {
        await refusedLocally(tunnel);
        await tunnel.waitForLog(expected, 10_000);
        const errors = errorLines(tunnel);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(expected);
      } finally {
        tunnel.stop();
      }
    }
  });

  test("describeFailure names what the user can fix", () => {
    const t = parseTarget("wss://relay.example.org/relay");
    expect(t).toEqual({
      scheme: "wss",
      host: "relay.example.org",
      port: 443,
      url: "wss://relay.example.org/relay",
      shown: "wss://relay.example.org/relay",
    });
    // Credentials in the URL are used, never logged.
    expect(parseTarget("wss://player:s3cret@relay.example.org/relay")).toMatchObject({
      url: "wss://player:s3cret@relay.example.org/relay",
      shown: "wss://relay.example.org/relay",
    });
    expect(parseTarget("wss://relay.example.org/relay?key=s3cret").shown).toBe("wss://relay.example.org/relay?***");
    expect(parseTarget("tls://relay.example.org")).toMatchObject({ port: 9443, url: "tls://relay.example.org:9443" });
    expect(parseTarget("wss://relay.example.org").url).toBe("wss://relay.example.org/relay");
    expect(
      describeFailure(t, "ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match certificate's altnames", false)
        .reason,
    ).toBe("certificate");
    expect(describeFailure(t, "ECONNREFUSED", "Failed to connect", false).text).toBe(
      "connection refused by relay.example.org:443",
    );
    expect(
      describeFailure(t, undefined, "WebSocket connection to 'x' failed: Expected 101 status code: 502", false).text,
    ).toContain("HTTP 502");
  });
});

describe("tunnel: the command line", () => {
  const main = join(ROOT, "src", "main.ts");

  test("a bad --to or --listen is one line and exit 2", async () => {
    for (const args of [
      ["--to", "ftp://relay.example.org"],
      ["--to", "wss://relay.example.org/relay", "--listen", "nowhere"],
      [],
    ]) {
      const p = Bun.spawn([process.execPath, main, "tunnel", ...args], { stdout: "pipe", stderr: "pipe" });
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      expect(code).toBe(2);
      expect(err.trim().split("\n")).toHaveLength(1);
      expect(err).toMatch(/^sova-relay: (invalid value for --(to|listen)|tunnel needs --to)/);
    }
  });

  test("as a process: --to twice (a cluster's nodes): the first line names both, in the order they are tried", async () => {
    const args = ["tunnel", "--listen", "127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--to", "tls://relay.example:9443"];
    const p = Bun.spawn([process.execPath, main, ...args], { stdout: "pipe", stderr: "pipe" });
    const reader = p.stderr.getReader();
    let text = "";
    while (!text.includes("\n")) text += new TextDecoder().decode((await reader.read()).value);
    p.kill();
    await p.exited;
    expect(text).toMatch(/carrying to tcp:\/\/127\.0\.0\.1:9 \(then tls:\/\/relay\.example:9443\)/);
  });

  test(`as a process: \
a certificate error is one line on stderr, also when Sova retries, and the tunnel keeps serving`, async () => {
    const relay = await relayWith(TLS_FLAGS);
    const watcher = logWatcher();
    const p = Bun.spawn(
      [process.execPath, main, "tunnel", "--listen", "127.0.0.1:0", "--to", `tls://localhost:${relay.tlsPort}`],
      { stdout: "pipe", stderr: "pipe" },
    );
    void (async () => {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of p.stderr) {
        pending += decoder.decode(chunk, { stream: true });
        for (let nl = pending.indexOf("\n"); nl !== -1; nl = pending.indexOf("\n")) {
          watcher.line(pending.slice(0, nl + 1));
          pending = pending.slice(nl + 1);
        }
      }
    })();
    try {
      const listening = await watcher.waitForLog(/Tunnel listening on 127\.0\.0\.1:(\d+)/, 10_000);
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(listening)![1]);
      for (let i = 0; i < 2; i++) {
        const c = await connect({ port });
        await c.closed;
      }
      await watcher.waitForLog(/Connection 2 closed/);
      // Sova retrying gets one line, not one per attempt.
      const errors = watcher.logs.filter((l) => /ERROR|WARN|^\s+at |Error:/.test(l));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/ERROR .*Connection 1: localhost:\d+'s certificate is not trusted/);
    } finally {
      p.kill();
      await p.exited;
    }
  });
});
