/**
 * Through Debian's Caddy (2.6), with the docs' Caddyfile: a player goes tunnel -> Caddy (wss)
 * -> the relay's /relay, as tests/packaging/nginx.test.ts does through nginx. The Caddyfile
 * is read from the docs; what changes is declared below: Caddy and the relay share this host
 * (the docs' "127.0.0.1/32 when both run on the host"), the site is 127.0.0.1 on a free port
 * with the test certificate instead of relay.example.org with one from Let's Encrypt, and
 * neither its admin endpoint nor its port-80 redirect listens (several Caddys may run here at once). Skipped, loudly, without caddy.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { lineOrEnd, watchOutput } from "../support/lines.ts";
import { unusedPort } from "../support/ports.ts";
import { recipe } from "../support/recipes.ts";
import {
  playThroughProxy,
  type RelayBehindProxy,
  spoofedAddressIgnored,
  startRelayBehindProxy,
  watchThroughProxy,
} from "../support/proxy.ts";
import type { RelayHandle } from "../support/relay.ts";
import { openWs, TEST_CA, TLS_DIR } from "../support/transport.ts";

const CADDY = ["/usr/bin/caddy", "/usr/sbin/caddy"].find((p) => existsSync(p)) ?? Bun.which("caddy");

interface Caddy {
  port: number;
  proc: Subprocess<"ignore", "ignore", "pipe">;
  dir: string;
}

/** The docs' Caddyfile, for a Caddy on this host in front of the relay's HTTP port. */
function caddyfile(port: number, relayHttpPort: number): string {
  return recipe("caddyfile").with([
    [
      "relay.example.org {",
      `{\n\tadmin off\n\tauto_https disable_redirects\n}\n` +
        `https://127.0.0.1:${port} {\n\tbind 127.0.0.1\n\ttls ${TLS_DIR}/test-a.crt ${TLS_DIR}/test-a.key`,
    ],
    ["reverse_proxy relay:8080", `reverse_proxy 127.0.0.1:${relayHttpPort}`],
  ]);
}

/** Caddy on a free port, trying another when one was taken meanwhile; a reason when it cannot run. */
async function startCaddy(relayHttpPort: number): Promise<Caddy | string> {
  const dir = mkdtempSync(join(tmpdir(), "sova-caddy-"));
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = unusedPort();
    writeFileSync(join(dir, "Caddyfile"), caddyfile(port, relayHttpPort));
    const proc = Bun.spawn([CADDY!, "run", "--config", join(dir, "Caddyfile"), "--adapter", "caddyfile"], {
      // Caddy keeps its state under HOME and XDG_*: this run's own directory.
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    const output = watchOutput([proc.stderr]);
    const ready = await lineOrEnd(output, /serving initial configuration/, "caddy", 15_000).then(
      () => true,
      () => false,
    );
    if (ready) return { port, proc, dir };
    proc.kill();
    await proc.exited;
    if (!output.watcher.logs.some((l) => l.includes("address already in use"))) {
      rmSync(dir, { recursive: true, force: true });
      return `caddy could not start: ${output.watcher.logs.join("").trim().split("\n").pop() ?? `exit ${proc.exitCode}`}`;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return "caddy found no free port in 3 attempts";
}

let relay: RelayHandle | null = null;
let caddy: Caddy | null = null;
let skipReason: string | null = CADDY ? null : "caddy is not installed (apt-get install caddy; .ci/run does)";

let behind: RelayBehindProxy | null = null;

if (skipReason === null) {
  behind = await startRelayBehindProxy("127.0.0.1");
  relay = behind.relay;
  const started = await startCaddy(relay.httpPort!);
  if (typeof started === "string") skipReason = started;
  else caddy = started;
}

afterAll(async () => {
  if (caddy) {
    caddy.proc.kill("SIGTERM");
    await caddy.proc.exited;
    rmSync(caddy.dir, { recursive: true, force: true });
  }
  await behind?.stop();
});

if (skipReason !== null) console.warn(`SKIP: the Caddy reverse-proxy tests because ${skipReason}`);

describe.skipIf(skipReason !== null)("through Caddy, with the docs' Caddyfile", () => {
  test("a player goes tunnel -> Caddy (wss, test CA) -> relay and plays with an instance connected directly", async () => {
    await playThroughProxy(`wss://127.0.0.1:${caddy!.port}/relay`, relay!);
  });

  test("Caddy does not pass on a client's own X-Forwarded-For: the address Caddy saw counts", async () => {
    // 203.0.113.0/24 is denied; had Caddy passed the header on, the relay would refuse the upgrade.
    await spoofedAddressIgnored(`wss://127.0.0.1:${caddy!.port}/relay`, relay!);
  });

  test("the spectator page through the docs' handle /watch/*: served, its event stream passed as it comes; a wrong \
key is any unknown path", async () => {
    await watchThroughProxy(`https://127.0.0.1:${caddy!.port}`, behind!.spectatorKey);
  });

  test("only /relay and /watch/ are routed: another path gets Caddy's 404, and the status page stays private", async () => {
    const ws = await openWs(`wss://127.0.0.1:${caddy!.port}/elsewhere`, {}, { ca: TEST_CA });
    expect(ws.error).toContain("404");
    const page = await fetch(`https://127.0.0.1:${caddy!.port}/status`, { tls: { ca: TEST_CA } } as RequestInit);
    expect(page.status).toBe(404);
  });
});
