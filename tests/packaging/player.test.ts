/**
 * A player's one-liner, exactly as the docs print it, on a machine of its own: it installs the
 * binary with install.sh (as root, into /usr/local/bin) and runs the tunnel to
 * wss://relay.example.org/relay. relay.example.org is another machine, set up as the docs say:
 * Debian's nginx with the docs' server block in /etc/nginx/sites-enabled, a certificate at
 * /etc/letsencrypt/live/relay.example.org/, and the relay started by the docs' command. The
 * certificate is self-signed for this run and trusted in the player's system store, as a public
 * CA's would be; github.com's release page is a local mirror (tests/support/mirror.ts), the one
 * change to the one-liner (with install.sh's --base-url). Needs root, nginx, curl and the compiled binary; skipped loudly otherwise.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { bundleWith, selfSigned } from "../support/certs.ts";
import { type MachineSet, machinesSkipReason, startMachines } from "../support/machines.ts";
import { makeMirror, type Mirror } from "../support/mirror.ts";
import { BINARY, ROOT } from "../support/paths.ts";
import { recipe } from "../support/recipes.ts";

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
const skip =
  machinesSkipReason() ??
  (NGINX ? null : "nginx is not installed (apt-get install nginx; .ci/run does)") ??
  (Bun.which("curl") ? null : "curl is not installed (apt-get install curl)") ??
  (existsSync(BINARY) ? null : `${BINARY} is not built (npm run build)`);
if (skip) console.warn(`SKIP: the player's one-liner through nginx because ${skip}`);

function play(args: string): string {
  return `${process.execPath} ${join(ROOT, "tests/support/play.ts")} ${args}`;
}

let set: MachineSet | null = null;
let mirror: Mirror | null = null;
afterAll(async () => {
  await set?.stop();
  mirror?.remove();
});

describe.skipIf(skip !== null)("a player's one-liner, to a relay behind nginx as the docs set it up", () => {
  test(`installs the binary, tunnels over wss:// through nginx, and plays with an instance connected \
directly; the relay sees the player's own address`, async () => {
    mirror = makeMirror();
    set = await startMachines(["relay.example.org", "player"]);
    const host = set.get("relay.example.org");
    const pem = selfSigned(["relay.example.org"]);
    await host.write("/etc/letsencrypt/live/relay.example.org/fullchain.pem", pem.cert);
    await host.write("/etc/letsencrypt/live/relay.example.org/privkey.pem", pem.key, "0600");
    await host.run(`install -m 0755 ${BINARY} /usr/local/bin/sova-relay`);
    const relay = host.start(recipe("nginx-relay").text);
    await relay.waitForLog(/Listening on 0\.0\.0\.0:9090/);
    // Debian's own nginx.conf, with the docs' server block as the only site.
    await host.run("rm -f /etc/nginx/sites-enabled/*");
    await host.write("/etc/nginx/sites-enabled/sova-relay", recipe("nginx").text);
    const nginx = host.start(`${NGINX} -g 'daemon off; error_log stderr notice;'`);
    await nginx.waitForLog(/start worker process/);

    const player = set.get("player");
    await player.write("/etc/ssl/certs/ca-certificates.crt", bundleWith(pem));
    // install.sh is told of the mirror by its documented --base-url (not SOVA_RELAY_BASE_URL in the
    // environment: the tunnel on the next line would refuse to start with install.sh's name in it).
    const oneLiner = recipe("tunnel-oneliner").with([
      ["https://github.com/sova-org/sova-relay/releases", mirror.url],
      ["| sh\n", `| sh -s -- --base-url ${mirror.url}\n`],
    ]);
    const tunnel = player.start(oneLiner);
    const installed = await tunnel.waitForLog(/^installed /, 60_000);
    expect(installed).toMatch(
      new RegExp(
        `^installed sova-relay ${pkg.version.replaceAll(".", "\\.")} \\(commit \\w+, target bun-linux-\\w+\\) to /usr/local/bin/sova-relay\\n$`,
      ),
    );
    await tunnel.waitForLog(/Tunnel listening on 127\.0\.0\.1:9090, carrying to wss:\/\/relay\.example\.org\/relay/);

    const venue = player.start(play("--port 9090 --name at-the-venue --with at-home --stay"));
    const home = await host.run(play("--port 9090 --name at-home --with at-the-venue"));
    expect(home.stderr).toBe("");
    expect(JSON.parse(home.stdout).got).toEqual(["at-the-venue"]);
    expect(JSON.parse(await venue.waitForLog(/^\{/)).got).toEqual(["at-home"]);
    // nginx connects from 127.0.0.1, which --trust-proxy names: the relay takes the player's address
    // from X-Forwarded-For (shown as its network on /status).
    const status = JSON.parse((await host.run("curl -fsS http://127.0.0.1:8080/status")).stdout);
    const seen = status.instances.find((i: { name: string }) => i.name === "at-the-venue");
    expect(seen.address).toBe(player.ip.replace(/\.\d+\.\d+$/, ".x.x"));
  }, 180_000);
});
