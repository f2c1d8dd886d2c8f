/**
 * Browsers cannot join by accident (issue 27, finding 5): a web page a player
 * visits on the relay's own machine can neither join a session through /relay
 * nor read the status through a name of its own (DNS rebinding).
 */
import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/peers.ts";
import { ClientPool, startInProcess } from "../support/relay.ts";
import { openWs } from "../support/transport.ts";

const keep = cleanupAfterEach();

import type { Message } from "../../src/protocol/messages.ts";

const register = (name: string): Message => ({
  type: "RegisterInstance",
  instance_name: name,
  version: "0.1.0",
  session_token: null,
  capabilities: [],
});

describe("5: /relay and Origin", () => {
  test(`an upgrade carrying a web page's Origin is refused with 403 and reaches no one; \
one without (Sova, the tunnel) or from an allowed origin plays`, async () => {
    const relay = keep(await startInProcess(["--http-port", "any", "--allow-origin", "https://sova.example.org"]));
    const url = `ws://127.0.0.1:${relay.httpPort}/relay`;
    const pool = new ClientPool(() => relay.port);
    try {
      const sova = await pool.register("sova");
      const evil = await openWs(url, { Origin: "https://evil.example" });
      expect(evil.error).toContain("Expected 101 status code: 403");
      await relay.waitForEvent("websocket_refused", { reason: "origin" });
      const page = await openWs(url, { Origin: "https://sova.example.org" });
      expect(page.error).toBeNull();
      page.send(register("from-our-page"));
      expect((await page.next()).type).toBe("RegistrationResponse");
      const tunnelLike = await openWs(url);
      tunnelLike.send(register("no-origin"));
      expect((await tunnelLike.next()).type).toBe("RegistrationResponse");
      expect([...relay.server!.relay.sessions.values()][0]!.instances.map((i) => i.name).sort()).toEqual([
        "from-our-page",
        "no-origin",
        "sova",
      ]);
      const metrics = await (await fetch(`http://127.0.0.1:${relay.httpPort}/metrics`)).text();
      expect(metrics).toContain('sova_relay_websocket_refusals_total{reason="origin"} 1');
      expect(sova.unread.filter((m) => m.type === "StateBroadcast")).toEqual([]);
      page.ws.close();
      tunnelLike.ws.close();
    } finally {
      pool.closeAll();
    }
  });
});

describe("5: the HTTP endpoints and Host", () => {
  test(`a name the host did not allow gets 421 saying how to allow it; IP addresses, localhost and \
--allow-host names are answered; /healthz answers any`, async () => {
    const relay = keep(await startInProcess(["--http-port", "any", "--allow-host", "relay.example.org"]));
    const at = (path: string, host: string) =>
      fetch(`http://127.0.0.1:${relay.httpPort}${path}`, { headers: { Host: host } });
    for (const path of ["/", "/status", "/events", "/metrics"]) {
      const r = await at(path, "rebind.evil.example");
      expect(r.status).toBe(421);
      expect(await r.text()).toBe(
        "this relay does not answer for 'rebind.evil.example'; its host can allow the name with" +
          " --allow-host rebind.evil.example\n",
      );
    }
    await relay.waitForEvent("http_host_refused", { host: "rebind.evil.example" });
    for (const host of ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", "relay.example.org", "RELAY.example.org."]) {
      const r = await at("/status", host);
      expect(r.status).toBe(200);
    }
    expect((await at("/healthz", "anything.example")).status).toBe(200);
    const metrics = await (await at("/metrics", "localhost")).text();
    expect(metrics).toContain('sova_relay_http_refused_total{reason="host"} 4');
  });
});
