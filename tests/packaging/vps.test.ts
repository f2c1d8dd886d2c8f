/**
 * A host's path on a fresh Debian 12 server, as the docs print it: install.sh's one-liner, the
 * by-hand download with its checksum, then the systemd unit installed and started with a token
 * of its own. The server is a podman container booted with systemd as PID 1 (privileged, so
 * systemd can set up the unit's DynamicUser, StateDirectory and ProtectSystem namespaces);
 * github.com's release page is a local mirror mounted into it (tests/support/mirror.ts), the
 * one change to the commands. Not enforced in that container, so not tested: MemoryMax and
 * CPUQuota (systemd sets them, but this host's cgroup v1 controllers are the container's own,
 * read-only). Skipped, loudly, without root or podman.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../src/client/client.ts";
import pkg from "../../package.json" with { type: "json" };
import { makeMirror, type Mirror } from "../support/mirror.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import { lineOrEnd, watchOutput } from "../support/lines.ts";
import { containerLog, podman, podmanEnv, podmanSkipReason, uniqueName, vpsImage } from "../support/podman.ts";
import { recipe } from "../support/recipes.ts";

const skip = podmanSkipReason();
if (skip) console.warn(`SKIP: the install and systemd recipes on a fresh server because ${skip}`);

const GITHUB = "https://github.com/sova-org/sova-relay/releases";
let mirror: Mirror | null = null;
let name: string | null = null;
afterAll(async () => {
  if (name) await podman(["rm", "-f", "-v", name]);
  mirror?.remove();
});

/** A script run as root on the server, stopping at the first failure. */
function onServer(script: string, env: Record<string, string> = {}) {
  const flags = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  return podman(["exec", "-w", "/root", ...flags, name!, "bash", "-e", "-o", "pipefail", "-c", script], 180_000);
}

/** Where the journal ends now: what comes after it is what the next command caused. */
async function journalCursor(): Promise<string> {
  const r = await onServer("journalctl -n 0 --show-cursor");
  return /-- cursor: (\S+)/.exec(r.stdout)![1]!;
}

/** The relay's first journal line after `cursor` matching `pattern`, as it is written (journalctl -f). */
async function journalLine(cursor: string, pattern: RegExp): Promise<string> {
  const proc = Bun.spawn(
    ["podman", "exec", name!, "journalctl", "-u", "sova-relay", "-f", "-o", "cat", `--after-cursor=${cursor}`],
    { env: { ...process.env, ...(await podmanEnv()) }, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  try {
    return await lineOrEnd(watchOutput([proc.stdout, proc.stderr]), pattern, "the relay's journal", 60_000);
  } finally {
    proc.kill();
  }
}

async function sessionIds(): Promise<string[]> {
  const r = await onServer("curl -fsS http://127.0.0.1:8080/status");
  return (JSON.parse(r.stdout) as { sessions: Array<{ id: string }> }).sessions.map((s) => s.id);
}

describe.skipIf(skip !== null)("a fresh Debian 12 server with systemd, as the docs set it up", () => {
  test(`install.sh, the by-hand download, then the unit with a token: the relay runs as a dynamic user, \
keeps its session across a restart and stops cleanly`, async () => {
    const image = await vpsImage();
    mirror = makeMirror();
    name = uniqueName("sova-vps");
    const port = unusedPort();
    const run = await podman([
      // A terminal, so systemd writes its boot to the console, where the test waits for it.
      ...["run", "-d", "-t", "--name", name, "--privileged", "--systemd=always"],
      ...["-p", `127.0.0.1:${port}:9090`, "-v", `${mirror.dir}:${mirror.dir}:ro`, image, "/sbin/init"],
    ]);
    expect(run.stderr).toBe("");
    await containerLog(name, /Reached target .*Multi-User System/, 120_000);
    const boot = await podman(["exec", name, "systemctl", "is-system-running", "--wait"], 120_000);
    expect(boot.stdout.trim()).toMatch(/^(running|degraded)$/);

    // install.sh takes a mirror from its documented --base-url.
    const install = await onServer(
      recipe("install").with([
        [GITHUB, mirror.url],
        ["| sh\n", `| sh -s -- --base-url ${mirror.url}\n`],
      ]),
    );
    expect(install.stderr).toBe("");
    expect(install.stdout).toMatch(
      new RegExp(
        `^installed sova-relay ${pkg.version.replaceAll(".", "\\.")} \\(commit \\w+, target bun-linux-\\w+\\) to /usr/local/bin/sova-relay\\n$`,
      ),
    );

    if (process.arch === "x64") {
      const byHand = await onServer(recipe("install-by-hand").with([[GITHUB, mirror.url]]));
      expect(byHand.code).toBe(0);
      // What the docs' comment says --version prints, with this build's commit.
      const shown = /# (sova-relay .*)$/m.exec(recipe("install-by-hand").text)![1]!;
      const pattern = shown.replace(/[.()]/g, "\\$&").replace("1a2b3c4", "\\w+");
      expect(byHand.stdout).toMatch(new RegExp(`sova-relay-linux-x64: OK\\n${pattern}\\n$`));
    }

    const beforeStart = await journalCursor();
    const unit = await onServer(recipe("systemd-install").with([[GITHUB, mirror.url]]));
    expect(unit.code).toBe(0);
    const token = /^SOVA_RELAY_TOKENS=(\S+)$/m.exec(unit.stdout)?.[1];
    expect(token?.length).toBe(32);
    // The unit the release carries is the one the docs show.
    const installed = (await onServer("cat /etc/systemd/system/sova-relay.service")).stdout;
    expect(installed).toBe(readFileSync(join(ROOT, "packaging/sova-relay.service"), "utf8"));
    expect(installed.slice(installed.indexOf("[Unit]"))).toBe(recipe("systemd-unit").text);
    expect((await onServer("stat -c %a /etc/sova-relay.env")).stdout.trim()).toBe("600");

    const journal = () => onServer("journalctl -u sova-relay --no-pager -o cat").then((r) => r.stdout);
    await journalLine(beforeStart, /Listening on 0\.0\.0\.0:9090 \(.*1 token-protected session\)/);
    const c = await connect({ port });
    await c.register({ name: "on-the-vps", token: token! });
    const ids = await sessionIds();
    c.close();
    expect(ids).toHaveLength(1);

    const who = await onServer(
      "pid=$(systemctl show -p MainPID --value sova-relay); awk '/^Uid:/ {print $2}' /proc/$pid/status; " +
        "stat -c '%a %U' /var/lib/private/sova-relay/session-key; " +
        "systemctl show sova-relay -p DynamicUser -p NoNewPrivileges -p ProtectSystem -p ProtectHome --value",
    );
    const [uid, key, ...hardening] = who.stdout.trim().split("\n");
    expect(Number(uid)).toBeGreaterThan(60000);
    expect(key).toBe("600 sova-relay");
    expect(hardening).toEqual(["yes", "yes", "strict", "yes"]);

    // `systemctl reload`, as the docs say (the unit's ExecReload): a SIGHUP, which rereads the spectator keys.
    const beforeReload = await journalCursor();
    expect((await onServer("systemctl reload sova-relay")).code).toBe(0);
    await journalLine(
      beforeReload,
      /Spectator keys from \/var\/lib\/sova-relay\/spectators: 0 sessions can be watched/,
    );

    const beforeRestart = await journalCursor();
    expect((await onServer("systemctl restart sova-relay")).code).toBe(0);
    await journalLine(beforeRestart, /Listening on/);
    const again = await connect({ port });
    await again.register({ name: "after-restart", token: token! });
    expect(await sessionIds()).toEqual(ids);
    again.close();

    expect((await onServer("systemctl stop sova-relay")).code).toBe(0);
    const stopped = await onServer("systemctl show sova-relay -p Result -p ExecMainStatus --value");
    expect(stopped.stdout.trim().split("\n")).toEqual(["success", "0"]);
    const log = await journal();
    expect(log).toContain("Shutdown complete");
    expect(log).not.toContain(token!);
  }, 600_000);
});
