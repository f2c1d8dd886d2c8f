/**
 * What every reverse proxy the docs show must do for the relay (tests/packaging/nginx.test.ts,
 * caddy.test.ts): carry a tunnel's WebSocket both ways, big frames included, and keep a
 * client's own X-Forwarded-For from choosing its address, and pass spectator pages and their
 * event streams. `url` is the proxy's wss:// /relay.
 */
import { expect } from "bun:test";
import { connect, type RelayClient, updateValues } from "../../src/client/client.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spectatorPath, writeSpectatorFile } from "../../src/storage/spectator-file.ts";
import { keyDigest, makeKey } from "../../src/watch/index.ts";
import { ClientPool, type RelayHandle, startInProcess } from "./relay.ts";
import { openWs, TEST_CA, tunnelTo } from "./transport.ts";

/** A player through the proxy plays with one connected directly; `whilePlaying` looks at the relay meanwhile. */
export async function playThroughProxy(
  url: string,
  relay: RelayHandle,
  whilePlaying: (player: RelayClient) => void = () => {},
): Promise<void> {
  const tunnel = tunnelTo(url, { ca: TEST_CA });
  const pool = new ClientPool(() => relay.port);
  try {
    const direct = await pool.register("at-home");
    const player = await connect({ port: tunnel.port });
    const reg = await player.register({ name: "at-the-venue" });
    expect(reg.current_instances.map((i) => i.name)).toEqual(["at-home"]);
    direct.sendUpdate(Uint8Array.of(1, 2), 11n);
    expect((await player.next("StateBroadcast")).timestamp).toBe(11n);
    player.sendUpdate(new Uint8Array(200_000).fill(7), 12n);
    const m = await direct.next("StateBroadcast");
    expect({ from: m.source_instance_name, at: m.timestamp, size: updateValues(m).length }).toEqual({
      from: "at-the-venue",
      at: 12n,
      size: 200_000,
    });
    whilePlaying(player);
    player.close();
    expect((await direct.next("InstanceDisconnected")).instance_name).toBe("at-the-venue");
  } finally {
    pool.closeAll();
    tunnel.stop();
  }
}

/**
 * A client claiming 203.0.113.9 (which the relay must be started to deny) still registers: the
 * proxy put the address it saw last, or replaced the header, and the relay never saw the claim.
 */
export async function spoofedAddressIgnored(url: string, relay: RelayHandle): Promise<void> {
  const ws = await openWs(url, { "X-Forwarded-For": "203.0.113.9" }, { ca: TEST_CA });
  expect(ws.error).toBeNull();
  ws.send({
    type: "RegisterInstance",
    instance_name: "spoofer",
    version: "0.1.0",
    session_token: null,
    capabilities: [],
  });
  expect((await ws.next()).type).toBe("RegistrationResponse");
  ws.ws.close(1000);
  await ws.closed;
  expect(relay.logs.some((l) => l.includes("203.0.113.9"))).toBe(false);
}

/**
 * The spectator page through the proxy at `base` (https://host:port): served, its event
 * stream passed on as it comes (not held in the proxy's buffers), a wrong key answered as
 * any unknown path. `host`: the site's name, where the proxy serves one.
 */
export async function watchThroughProxy(base: string, key: string, host?: string): Promise<void> {
  const at = (path: string) =>
    fetch(`${base}${path}`, { headers: host ? { Host: host } : {}, tls: { ca: TEST_CA } } as RequestInit);
  const page = await at(`/watch/${key}`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("<title>Watching a Sova session</title>");

  const events = await at(`/watch/${key}/events`);
  expect(events.headers.get("content-type")).toContain("text/event-stream");
  const reader = events.body!.getReader();
  let text = "";
  // Held in a buffering proxy's buffer, the first event would never come: the read would time the test out.
  while (!/event: snapshot\ndata: .*\n\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
  expect(text).toMatch(/^retry: \d+\n\nid: \S+\nevent: snapshot\n/);
  await reader.cancel();

  expect((await at(`/watch/${makeKey()}`)).status).toBe(404);
}

export interface RelayBehindProxy {
  relay: RelayHandle;
  /** Opens the open session's spectator page. */
  spectatorKey: string;
  stop(): Promise<void>;
}

/**
 * The relay as the proxy recipes run it: trusting the proxy at `proxyAddress`, a spectator
 * key for the open session in its state directory (docs/watching.md), 203.0.113.0/24 denied
 * (what spoofedAddressIgnored sends).
 */
export async function startRelayBehindProxy(proxyAddress: string): Promise<RelayBehindProxy> {
  const stateDir = mkdtempSync(join(tmpdir(), "sova-proxy-watch-"));
  const spectatorKey = makeKey();
  writeSpectatorFile(spectatorPath(stateDir), [{ session: "open", digest: keyDigest(spectatorKey) }]);
  const relay = await startInProcess([
    "--state-dir",
    stateDir,
    "--http-port",
    "any",
    "--trust-proxy",
    `${proxyAddress}/32`,
    "--deny",
    "203.0.113.0/24",
  ]);
  return {
    relay,
    spectatorKey,
    async stop() {
      await relay.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
