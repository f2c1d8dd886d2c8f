/**
 * Through a real HTTP reverse proxy: Debian's nginx, with the docs' server block,
 * terminates TLS with the test certificate and routes /relay, with the Upgrade
 * headers, to the relay's HTTP port; a player goes tunnel -> nginx (wss) -> relay. nginx connects to
 * the relay from 127.0.0.3 (proxy_bind), so the relay can tell the proxy from
 * the client and --trust-proxy has something to decide. Skipped, loudly, when
 * nginx is not installed (.ci/run installs it) or cannot run here.
 */
import { unusedPort } from "../support/ports.ts";
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { recipe } from "../support/recipes.ts";
import {
  playThroughProxy,
  type RelayBehindProxy,
  spoofedAddressIgnored,
  startRelayBehindProxy,
  watchThroughProxy,
} from "../support/proxy.ts";
import { logWatcher, type RelayHandle } from "../support/relay.ts";
import { TEST_CA, TLS_DIR, openWs } from "../support/transport.ts";

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p)) ?? Bun.which("nginx");
const PROXY_ADDRESS = "127.0.0.3";

interface Nginx {
  port: number;
  proc: Subprocess<"ignore", "ignore", "pipe">;
  dir: string;
  stop(): Promise<void>;
}

/**
 * nginx's main configuration around the docs' server block (tests/support/recipes.ts), which
 * changes only here: a free port on 127.0.0.1 and the test certificate instead of 443 and Let's
 * Encrypt's, the relay's HTTP port instead of 8080, and proxy_bind, so that nginx reaches the
 * relay from 127.0.0.3 and the relay can tell the proxy from the player.
 */
function config(dir: string, port: number, upstreamPort: number): string {
  const server = recipe("nginx").with([
    ["listen 443 ssl;", `listen 127.0.0.1:${port} ssl;`],
    ["/etc/letsencrypt/live/relay.example.org/fullchain.pem", `${TLS_DIR}/test-a.crt`],
    ["/etc/letsencrypt/live/relay.example.org/privkey.pem", `${TLS_DIR}/test-a.key`],
    [
      "proxy_pass http://127.0.0.1:8080;",
      `proxy_pass http://127.0.0.1:${upstreamPort};\n        proxy_bind ${PROXY_ADDRESS};`,
    ],
  ]);
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${server}
}
`;
}

/** Starts nginx on a free port, trying another when one was taken meanwhile; null (with why) when it cannot run. */
async function startNginx(upstreamPort: number): Promise<Nginx | string> {
  const dir = mkdtempSync(join(tmpdir(), "sova-nginx-"));
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = unusedPort();
    writeFileSync(join(dir, "nginx.conf"), config(dir, port, upstreamPort));
    const proc = Bun.spawn([NGINX!, "-p", dir, "-c", join(dir, "nginx.conf")], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    const watcher = logWatcher();
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr)
        for (const line of decoder.decode(chunk).split("\n")) if (line) watcher.line(`${line}\n`);
    })();
    // nginx binds its sockets before it reports its limits: that line means it is serving.
    const ready = await Promise.race([
      watcher.waitForLog(/getrlimit|start worker/, 10_000).then(() => true),
      proc.exited.then(() => false),
    ]).catch(() => false);
    if (ready) {
      return {
        port,
        proc,
        dir,
        async stop() {
          proc.kill("SIGTERM");
          await proc.exited;
        },
      };
    }
    proc.kill();
    await proc.exited;
    if (!watcher.logs.some((l) => l.includes("Address already in use"))) {
      rmSync(dir, { recursive: true, force: true });
      return `nginx could not start: ${watcher.logs.join("").trim().split("\n").pop() ?? `exit ${proc.exitCode}`}`;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return "nginx found no free port in 3 attempts";
}

let relay: RelayHandle | null = null;
let nginx: Nginx | null = null;
let skipReason: string | null = NGINX ? null : "nginx is not installed (apt-get install nginx; .ci/run does)";

let behind: RelayBehindProxy | null = null;

if (skipReason === null) {
  behind = await startRelayBehindProxy(PROXY_ADDRESS);
  relay = behind.relay;
  const started = await startNginx(relay.httpPort!);
  if (typeof started === "string") skipReason = started;
  else nginx = started;
}

afterAll(async () => {
  await nginx?.stop();
  if (nginx) rmSync(nginx.dir, { recursive: true, force: true });
  await behind?.stop();
});

if (skipReason !== null) {
  console.warn(`SKIP: the nginx reverse-proxy tests because ${skipReason}`);
  describe("through nginx", () => {
    test.skip(`tunnel -> nginx (wss) -> relay (${skipReason})`, () => {});
  });
} else {
  describe("through nginx", () => {
    test(`a player goes tunnel -> nginx (wss, test CA) -> relay and plays with an \
instance connected directly`, async () => {
      await playThroughProxy(`wss://127.0.0.1:${nginx!.port}/relay`, relay!, () => {
        // nginx connects from 127.0.0.3; the relay believed its X-Forwarded-For (the tunnel's
        // 127.0.0.1, with no port: a header carries none).
        const venue = [...relay!.server!.relay.connections].find((c) => c.instance?.name === "at-the-venue")!;
        expect({ address: venue.peer.address, port: venue.peer.port }).toEqual({ address: "127.0.0.1", port: 0 });
        expect(relay!.logs.some((l) => l.includes(PROXY_ADDRESS))).toBe(false);
      });
    });

    test("a client's own X-Forwarded-For does not get past nginx: the address nginx saw counts", async () => {
      // 203.0.113.0/24 is denied; nginx appends the real peer, which is what the relay uses.
      await spoofedAddressIgnored(`wss://127.0.0.1:${nginx!.port}/relay`, relay!);
    });

    test("an upgrade on another path gets nginx's 404, not the relay", async () => {
      const ws = await openWs(`wss://127.0.0.1:${nginx!.port}/elsewhere`, {}, { ca: TEST_CA });
      expect(ws.error).toContain("Expected 101 status code: 404");
    });

    test(`the spectator page through the docs' /watch/ location: served for the site's name, its event \
stream not held in nginx's buffers; a wrong key is any unknown path`, async () => {
      await watchThroughProxy(`https://127.0.0.1:${nginx!.port}`, behind!.spectatorKey, "relay.example.org");
    });
  });
}
