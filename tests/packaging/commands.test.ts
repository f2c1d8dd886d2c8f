/**
 * The docs' own commands for the relay on a host, run as written: the quick start, a bad
 * value's one line, making a token, the relay with a Let's Encrypt certificate and the
 * players' side of it (the tunnel, and stunnel in its place). The commands that listen run on
 * small machines of their own (tests/support/machines.ts: network and mount namespaces), so
 * ports 9090, 8080 and 9443 are free for them and relay.example.org, its certificate under
 * /etc/letsencrypt and the players' trust in it are real on those machines; the certificate
 * is self-signed for this run and put in the players' system store, as a public CA's is.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../../src/host/config.ts";
import { bundleWith, selfSigned } from "../support/certs.ts";
import { type MachineSet, machinesSkipReason, startMachines } from "../support/machines.ts";
import { BINARY, ROOT } from "../support/paths.ts";
import { recipe, session } from "../support/recipes.ts";

const machinesSkip = machinesSkipReason();
const binarySkip = existsSync(BINARY) ? null : `${BINARY} is not built (npm run build)`;
const skip = binarySkip ?? machinesSkip;
if (skip) console.warn(`SKIP: the quick start and TLS recipes on machines of their own because ${skip}`);
const STUNNEL = ["/usr/bin/stunnel", "/usr/bin/stunnel4"].find((p) => existsSync(p));
if (!skip && !STUNNEL)
  console.warn("SKIP: the stunnel recipe because stunnel is not installed (apt-get install stunnel4)");

/** One instance stand-in (tests/support/play.ts) as a shell command on a machine. */
function play(args: string): string {
  return `${process.execPath} ${join(ROOT, "tests/support/play.ts")} ${args}`;
}

const INSTALL = `install -m 0755 ${BINARY} /usr/local/bin/sova-relay`;

let set: MachineSet | null = null;
afterEach(async () => {
  await set?.stop();
  set = null;
});

describe("commands on the relay's host", () => {
  test.skipIf(binarySkip !== null)("a bad value prints the docs' one line and exits 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "sova-bin-"));
    try {
      symlinkSync(BINARY, join(dir, "sova-relay"));
      for (const { command, output } of session(recipe("bad-value").text)) {
        const r = Bun.spawnSync(["sh", "-c", command], {
          env: { PATH: `${dir}:/usr/bin:/bin` },
          stdout: "pipe",
          stderr: "pipe",
        });
        expect(r.stdout.toString() + r.stderr.toString()).toBe(output);
        expect(r.exitCode).toBe(2);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("each way the docs make a token makes one the relay takes", () => {
    const [main, alternative] = recipe("token")
      .text.trim()
      .split(/\s+# or: /);
    for (const command of [main!, alternative!]) {
      const r = Bun.spawnSync(["bash", "-o", "pipefail", "-c", command], { stdout: "pipe", stderr: "pipe" });
      expect(r.exitCode).toBe(0);
      const token = r.stdout.toString().trim();
      expect(token).toHaveLength(32);
      expect(resolveConfig(["--token", token], {}).tokens).toEqual([token]);
    }
  });
});

describe.skipIf(skip !== null)("the quick start, on a machine of its own", () => {
  test(`npm start serves instances on 9090 on every interface and the status page on 127.0.0.1:8080 \
(npm install is .ci/run's first step)`, async () => {
    set = await startMachines(["host", "elsewhere"]);
    const host = set.get("host");
    const relay = host.start(recipe("quick-start").with([["npm install && ", ""]]));
    await relay.waitForLog(/Listening on 0\.0\.0\.0:9090 .*one open session/);
    await relay.waitForLog(/Status page on http:\/\/127\.0\.0\.1:8080\//);
    const [here, there] = await Promise.all([
      host.run(play("--port 9090 --name here --with there")),
      set.get("elsewhere").run(play("--host host --port 9090 --name there --with here")),
    ]);
    expect([here.stderr, there.stderr]).toEqual(["", ""]);
    const status = await host.run("curl -fsS http://127.0.0.1:8080/status");
    expect(JSON.parse(status.stdout).status).toBe("ok");
    const outside = await set.get("elsewhere").run("curl -sS -o /dev/null http://host:8080/status || echo refused");
    expect(outside.stdout).toContain("refused");
  }, 120_000);
});

describe.skipIf(skip !== null)("TLS as the docs set it up: the relay's certificate, the tunnel, stunnel", () => {
  test("players through the tunnel and through stunnel play with one connected directly, with the token", async () => {
    set = await startMachines(["relay.example.org", "player", "stunnel-player"]);
    const relayHost = set.get("relay.example.org");
    const pem = selfSigned(["relay.example.org"]);
    await relayHost.write("/etc/letsencrypt/live/relay.example.org/fullchain.pem", pem.cert);
    await relayHost.write("/etc/letsencrypt/live/relay.example.org/privkey.pem", pem.key, "0600");
    await relayHost.run(INSTALL);
    const token = "an-ensemble-token-0123456789";
    const relay = relayHost.start(recipe("tls-relay").text, { env: { TOKEN: token } });
    await relay.waitForLog(/Listening on 0\.0\.0\.0:9090 and 0\.0\.0\.0:9443 \(TLS\)/);

    const player = set.get("player");
    await player.write("/etc/ssl/certs/ca-certificates.crt", bundleWith(pem));
    await player.run(INSTALL);
    const tunnel = player.start(recipe("tunnel-tls").text);
    await tunnel.waitForLog(/Tunnel listening on 127\.0\.0\.1:9090, carrying to tls:\/\/relay\.example\.org:9443/);
    const players = ["direct", "tunnel"];
    const runs = [
      relayHost.run(play(`--port 9090 --name direct --token ${token} --with ${STUNNEL ? "tunnel,stunnel" : "tunnel"}`)),
      player.run(play(`--port 9090 --name tunnel --token ${token} --with ${STUNNEL ? "direct,stunnel" : "direct"}`)),
    ];
    if (STUNNEL) {
      const sp = set.get("stunnel-player");
      await sp.write("/etc/ssl/certs/ca-certificates.crt", bundleWith(pem));
      // The recipe is the service's configuration; run by hand, stunnel is kept in the foreground.
      await sp.write("/etc/stunnel/sova.conf", `foreground = yes\n${recipe("stunnel").text}`);
      const stunnel = sp.start(`${STUNNEL} /etc/stunnel/sova.conf`);
      await stunnel.waitForLog(/Configuration successful/);
      players.push("stunnel");
      runs.push(sp.run(play(`--port 9090 --name stunnel --token ${token} --with direct,tunnel`)));
    }
    const results = await Promise.all(runs);
    expect(results.map((r) => r.stderr)).toEqual(players.map(() => ""));
    expect(results.map((r) => JSON.parse(r.stdout).got.length)).toEqual(players.map(() => players.length - 1));
    expect(relay.logs.join("")).not.toContain(token);
  }, 120_000);
});
