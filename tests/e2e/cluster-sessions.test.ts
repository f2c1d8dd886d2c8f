/**
 * Token sessions across cluster nodes: nodes started with the same tokens, each
 * with its own fresh --state-dir and no file copied between them, put each token's
 * players into one session (src/cluster/secret.ts); nodes that cannot agree on the
 * session secret refuse, with one line. Real nats-server processes, relays in this
 * process or as child processes (for exit codes and the HTTP pages).
 */
import { afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect as natsConnect } from "@nats-io/transport-node";
import { connect, updateValues, type RelayClient } from "../../src/client/client.ts";
import { CLUSTER_BUCKET, SECRET_KEY, fingerprintOf } from "../../src/cluster/secret.ts";
import { sessionHash } from "../../src/core/access.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { clusterKit, describeWithNats, type Nats, type Node, renderMetricsOf, until } from "../support/cluster.ts";
import { ROOT } from "../support/paths.ts";
import { unusedPort } from "../support/ports.ts";
import { startProcess } from "../support/relay.ts";

const maybe = describeWithNats("tests/e2e/cluster-sessions.test.ts");
const kit = clusterKit();
afterEach(() => kit.cleanup());

const T1 = "first-ensemble-7Kq2xWm9";
const T2 = "second-ensemble-Rb4Lp8Zt";
const tagged = (sender: number, seq: number) => Uint8Array.of(sender, seq);
const RELAY = [process.execPath, join(ROOT, "src/main.ts")];

/** Every StateBroadcast a client gets, as [sender tag, sequence], and every presence notice, by name. */
function record(c: RelayClient) {
  const updates: Array<[number, number]> = [];
  const presence: string[] = [];
  c.onMessage((m: Message) => {
    if (m.type === "StateBroadcast") {
      const v = updateValues(m);
      updates.push([v[0]!, v[1]!]);
    } else if (m.type === "InstanceConnected") presence.push(m.instance_name);
  });
  return { updates, presence, from: (tag: number) => updates.filter(([t]) => t === tag).map(([, q]) => q) };
}

const stateFlags = (dir: string) => ["--token", T1, "--token", T2, "--state-dir", dir];
const sessionIds = (n: Node) => [...n.server.relay.sessions.keys()].sort();
const keptKey = (dir: string) => readFileSync(join(dir, "session-key"), "utf8").trim();
/** The id of `token`'s session on `node`, as its core keys it. */
const idOf = (node: Node, token: string) => sessionHash(token, node.link.sessionSecret!);
/** Names in `token`'s session on `node`, members on other nodes included. */
const namesIn = (node: Node, token: string) =>
  (node.server.relay.sessions.get(idOf(node, token))?.instances ?? []).map((i) => i.name).sort();
const instanceNamed = (node: Node, name: string) =>
  [...node.server.relay.sessions.values()].flatMap((s) => s.instances).find((i) => i.name === name);

/** The secret as the cluster holds it. */
async function clusterSecret(nats: Nats): Promise<Uint8Array> {
  const nc = await natsConnect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).open(CLUSTER_BUCKET);
    return Buffer.from((await kv.get(SECRET_KEY))!.string(), "hex");
  } finally {
    await nc.close();
  }
}

async function register(port: number, name: string, token: string, capabilities: string[] = []) {
  const c = await connect({ port });
  kit.clients.push(c);
  const response = await c.register({ name, token, capabilities });
  return { c, names: response.current_instances.map((i) => i.name).sort() };
}

/** Runs the relay's source as a process until it exits; its stderr lines. */
async function runToExit(args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn([...RELAY, "--host", "127.0.0.1", "--port", "0", "--http-port", "0", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  kit.track(() => void proc.kill("SIGKILL"));
  const [code, out, err] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, out, lines: err.split("\n").filter((l) => l !== "") };
}

maybe("token sessions across cluster nodes", () => {
  test(`two nodes with the same tokens, each with its own fresh --state-dir: one session per token \
(roster, presence, updates in order, names), two ensembles each private from the other`, async () => {
    const nats = kit.startNats();
    const dirs = { a: kit.tempDir("sova-state-a-"), b: kit.tempDir("sova-state-b-") };
    const [a, b] = await kit.cluster(nats, ["a", "b"], (n) => stateFlags(dirs[n as "a" | "b"]));
    const alice = await register(a!.port, "alice", T1, ["presence"]);
    const carol = await register(a!.port, "carol", T2, ["presence"]);
    await until(() => b!.server.relay.sessions.size === 2);
    const bob = await register(b!.port, "bob", T1);
    const dave = await register(b!.port, "dave", T2);
    // Each newcomer sees its own ensemble on the other node, and only it.
    expect(bob.names).toEqual(["alice"]);
    expect(dave.names).toEqual(["carol"]);
    expect((await alice.c.next("InstanceConnected")).instance_name).toBe("bob");
    expect((await carol.c.next("InstanceConnected")).instance_name).toBe("dave");

    const got = { alice: record(alice.c), bob: record(bob.c), carol: record(carol.c), dave: record(dave.c) };
    const N = 100;
    for (let i = 0; i < N; i++) {
      alice.c.sendUpdate(tagged(1, i));
      dave.c.sendUpdate(tagged(4, i));
    }
    const all = Array.from({ length: N }, (_, i) => i);
    await until(() => got.bob.updates.length === N && got.carol.updates.length === N);
    expect(got.bob.from(1)).toEqual(all);
    expect(got.carol.from(4)).toEqual(all);
    // What reached bob on b reached dave too if it leaked, and dave's socket is drained by a round trip (and the same
    // for carol's edits through a): nothing of the other ensemble.
    await Promise.all([alice.c.ping(), bob.c.ping(), carol.c.ping(), dave.c.ping()]);
    expect(got.dave.updates).toEqual([]);
    expect(got.alice.updates).toEqual([]);
    expect(got.bob.updates.length + got.carol.updates.length).toBe(2 * N);
    expect([...got.alice.presence, ...got.carol.presence]).toEqual([]);

    // Names are unique across the cluster within a session, and only within it.
    const dup = await connect({ port: b!.port });
    kit.clients.push(dup);
    await expect(dup.register({ name: "alice", token: T1 })).rejects.toThrow(/already in use/);
    expect((await register(b!.port, "alice", T2)).names).toEqual(["carol", "dave"]);

    // One id per token on both nodes, keyed with the cluster's secret, which both state dirs now keep.
    const secret = await clusterSecret(nats);
    expect(sessionIds(a!)).toEqual([sessionHash(T1, secret), sessionHash(T2, secret)].sort());
    expect(sessionIds(b!)).toEqual(sessionIds(a!));
    expect(keptKey(dirs.a)).toBe(Buffer.from(secret).toString("hex"));
    expect(keptKey(dirs.b)).toBe(keptKey(dirs.a));
    expect(a!.link.status().session_secret).toBe("agreed");
  }, 20_000);

  test(`three nodes, two ensembles: each member gets every other member's updates in order, \
the other ensemble's never`, async () => {
    const nats = kit.startNats();
    const [a, b, c] = await kit.cluster(nats, ["a", "b", "c"], (n) => stateFlags(kit.tempDir(`sova-state-${n}-`)));
    const alice = await register(a!.port, "alice", T1);
    const erin = await register(a!.port, "erin", T2);
    const bob = await register(b!.port, "bob", T1);
    await until(() => namesIn(c!, T1).join() === "alice,bob" && namesIn(c!, T2).join() === "erin");
    const carol = await register(c!.port, "carol", T1);
    const dave = await register(c!.port, "dave", T2);
    expect(carol.names).toEqual(["alice", "bob"]);
    expect(dave.names).toEqual(["erin"]);
    // Another node's member's name is taken in its session, free in the other.
    const dup = await connect({ port: c!.port });
    kit.clients.push(dup);
    await expect(dup.register({ name: "bob", token: T1 })).rejects.toThrow(/already in use/);
    await register(c!.port, "bob", T2);

    const ensemble = [alice, bob, carol];
    const got = ensemble.map((m) => record(m.c));
    const others = [record(erin.c), record(dave.c)];
    const N = 60;
    for (let i = 0; i < N; i++) for (const [k, m] of ensemble.entries()) m.c.sendUpdate(tagged(k + 1, i));
    await until(() => got.every((r) => r.updates.length === 2 * N), 10_000);
    const all = Array.from({ length: N }, (_, i) => i);
    got.forEach((r, k) => {
      for (const tag of [1, 2, 3]) expect(r.from(tag)).toEqual(tag === k + 1 ? [] : all);
    });
    await Promise.all([erin.c.ping(), dave.c.ping()]);
    expect(others.map((r) => r.updates.length)).toEqual([0, 0]);
    for (const n of [a!, b!, c!]) expect(n.link.status().gaps).toEqual({});
  }, 20_000);

  test(`a node restarted keeps the session: with NATS, a late joiner on it gets the history; \
without NATS, it starts on the secret its --state-dir kept and rejoins when NATS is back`, async () => {
    const port = unusedPort();
    const store = kit.tempDir("sova-nats-store-");
    const nats = kit.startNats(port, store);
    const dirs = { a: kit.tempDir("sova-state-a-"), b: kit.tempDir("sova-state-b-") };
    const flags = (n: "a" | "b") => [...stateFlags(dirs[n]), "--history", "100"];
    const [a, b] = await kit.cluster(nats, ["a", "b"], (n) => flags(n as "a" | "b"));
    await b!.waitForEvent("cluster_history");
    const alice = await register(a!.port, "alice", T1);
    const bob = await register(b!.port, "bob", T1);
    const atBob = record(bob.c);
    for (let i = 1; i <= 5; i++) alice.c.sendUpdate(tagged(1, i));
    await until(() => atBob.updates.length === 5);
    const session = idOf(a!, T1);

    await b!.stop();
    const b2 = await kit.startNode(nats, "b", flags("b"));
    await b2.waitForEvent("cluster_node_up", (r) => r.node === "a");
    await b2.waitForEvent("cluster_history");
    await until(() => b2.server.relay.sessions.get(session)?.names.has("alice") === true);
    const carol = await register(b2.port, "carol", T1);
    expect(carol.names).toEqual(["alice"]);
    const history = await b2.waitForEvent("registered", (r) => r.instance === "carol");
    expect(history.session).toBe(session);
    expect(history.history).toBe(5);

    await nats.stop();
    await b2.stop();
    const b3 = await kit.startNode(nats, "b", flags("b"));
    expect(b3.link.status().session_secret).toBe("unchecked");
    const dave = await register(b3.port, "dave", T1);
    expect(instanceNamed(b3, "dave")!.session.id).toBe(session);
    const again = kit.startNats(port, store);
    await again.ready;
    await b3.waitForEvent("cluster_secret_agreed", undefined, 10_000);
    expect(b3.link.status().session_secret).toBe("agreed");
    await until(() => b3.server.relay.sessions.get(session)?.names.has("alice") === true, 10_000);
    await until(() => a!.server.relay.sessions.get(session)?.names.has("dave") === true, 10_000);
    alice.c.sendUpdate(tagged(1, 6));
    expect(updateValues(await dave.c.next("StateBroadcast"))).toEqual(tagged(1, 6));
  }, 30_000);

  test(`a node whose --state-dir keeps another secret than the cluster's refuses to start: exit 2, \
one line, nothing secret`, async () => {
    const nats = kit.startNats();
    await nats.ready;
    await kit.startNode(nats, "a", ["--token", T1]);
    const dir = kit.tempDir("sova-state-x-");
    const foreign = randomBytes(32).toString("hex");
    writeFileSync(join(dir, "session-key"), `${foreign}\n`, { mode: 0o600 });
    const r = await runToExit(["--cluster", nats.url, "--node-name", "x", "--token", T1, "--state-dir", dir]);
    expect(r.code).toBe(2);
    const last = r.lines.at(-1)!;
    expect(last).toMatch(/^sova-relay: the session secret kept in .*session-key differs from the one this cluster/);
    expect(last).toContain("move that file away");
    expect(r.lines.filter((l) => l.startsWith("sova-relay:"))).toHaveLength(1);
    const everything = r.out + r.lines.join("\n");
    expect(everything).not.toMatch(/^\s+at /m);
    const secret = Buffer.from(await clusterSecret(nats)).toString("hex");
    for (const s of [foreign, secret, T1]) expect(everything).not.toContain(s);
    // It never joined: the cluster did not hear of it.
    expect(keptKey(dir)).toBe(foreign);
  }, 20_000);

  test("NATS without JetStream and tokens, no --cluster-secret: the node refuses to start, exit 2, one line", async () => {
    const nats = kit.startNats(undefined, undefined, [], false);
    await nats.ready;
    const r = await runToExit(["--cluster", nats.url, "--node-name", "x"], { SOVA_RELAY_TOKENS: T1 });
    expect(r.code).toBe(2);
    expect(r.lines.at(-1)).toMatch(/^sova-relay: JetStream is not enabled on the NATS server: .*--cluster-secret$/);
    expect(r.lines.join("\n")).not.toContain(T1);
  }, 20_000);

  test(`NATS without JetStream: nodes given the same --cluster-secret share token sessions; \
a node given another one is kept out, and both sides say so`, async () => {
    const nats = kit.startNats(undefined, undefined, [], false);
    await nats.ready;
    const shared = { SOVA_RELAY_CLUSTER_SECRET: "the-band-shares-this-1234" };
    const p = await kit.startNode(nats, "p", ["--token", T1], shared);
    const q = await kit.startNode(nats, "q", ["--token", T1], shared);
    expect(p.link.status().session_secret).toBe("given");
    await p.waitForEvent("cluster_node_up", (r) => r.node === "q");
    const r = await kit.startNode(nats, "r", ["--token", T1], { SOVA_RELAY_CLUSTER_SECRET: "another-band-secret-987" });
    await p.waitForEvent("cluster_node_refused", (e) => e.node === "r" && e.level === "error");
    await r.waitForEvent("cluster_node_refused", (e) => e.node === "p");
    expect(p.link.status().nodes_refused).toBe(1);
    expect(await renderMetricsOf(p)).toContain("sova_relay_cluster_nodes_refused_total 1");
    expect(p.link.status().nodes.map((n) => n.name)).toEqual(["q"]);
    const alice = await register(p.port, "alice", T1);
    await until(() => namesIn(q, T1).includes("alice"));
    expect((await register(q.port, "bob", T1)).names).toEqual(["alice"]);
    expect((await register(r.port, "alice", T1)).names).toEqual([]);
    alice.c.sendUpdate(tagged(1, 1));
    for (const l of [...p.logs, ...q.logs, ...r.logs]) expect(l).not.toMatch(/the-band-shares|another-band/);
  }, 20_000);

  test(`a node that started without NATS on a kept secret, and finds the cluster agreed on another, \
stays out and says why`, async () => {
    const port = unusedPort();
    const store = kit.tempDir("sova-nats-store-");
    const first = kit.startNats(port, store);
    await first.ready;
    const a = await kit.startNode(first, "a", ["--token", T1]);
    await first.stop();
    const dir = kit.tempDir("sova-state-x-");
    writeFileSync(join(dir, "session-key"), `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const x = await kit.startNode(`nats://127.0.0.1:${port}`, "x", ["--token", T1, "--state-dir", dir]);
    expect(x.link.status().session_secret).toBe("unchecked");
    const local = await register(x.port, "local", T1);
    await kit.startNats(port, store).ready;
    const refused = await x.waitForEvent("cluster_secret_mismatch", undefined, 10_000);
    expect(String(refused.msg)).toContain("move that file away");
    expect(x.link.status()).toMatchObject({ session_secret: "refused", connected: false });
    expect(await renderMetricsOf(x)).toContain("sova_relay_cluster_secret_refused 1");
    await a.waitForEvent("cluster_connected", (r) => r.reconnected === true, 10_000);
    // a heard nothing of x, and x's player is alone.
    expect(a.link.status().nodes).toEqual([]);
    expect(local.names).toEqual([]);
  }, 30_000);

  test(`names are claimed and released under the same key: "café" (NFD) and "alice " registered on node a, \
left, then registered on node b`, async () => {
    const nats = kit.startNats();
    const [a, b] = await kit.cluster(nats, ["a", "b"], () => ["--token", T1]);
    await a!.waitForEvent("cluster_names_shared");
    await b!.waitForEvent("cluster_names_shared");
    for (const name of ["cafe\u0301", "alice "]) {
      const key: string = name.normalize("NFC").trim();
      const first = await register(a!.port, name, T1);
      await until(() => instanceNamed(b!, name) !== undefined);
      first.c.close();
      await until(() => instanceNamed(b!, name) === undefined);
      // Refused with "already in use" until node a left the cluster, before claims were released by their key.
      const second = await register(b!.port, name, T1);
      expect(second.names).toEqual([]);
      expect(instanceNamed(b!, name)!.nameKey as string).toBe(key);
      second.c.close();
      await until(() => instanceNamed(a!, name) === undefined);
    }
  }, 20_000);

  test(`two node processes with tokens and fresh state dirs: /status shows one session id on both, \
keyed with the cluster's secret, and neither /status nor the page shows that secret`, async () => {
    const nats = kit.startNats();
    await nats.ready;
    const start = startProcess(RELAY);
    const nodes = await Promise.all(
      ["a", "b"].map(async (n) => {
        const r = await start(
          ["--cluster", nats.url, "--node-name", n, "--http-port", "any", "--state-dir", kit.tempDir(`sova-${n}-`)],
          { SOVA_RELAY_TOKENS: `${T1},${T2}` },
        );
        kit.track(() => r.stop());
        return r;
      }),
    );
    await nodes[0]!.waitForEvent("cluster_node_up", { node: "b" });
    await register(nodes[0]!.port, "alice", T1);
    await register(nodes[1]!.port, "bob", T1);
    const secret = await clusterSecret(nats);
    const expected = sessionHash(T1, secret);
    for (const n of nodes) {
      const base = `http://127.0.0.1:${n.httpPort}`;
      const status = await (await fetch(`${base}/status`)).text();
      const page = await (await fetch(`${base}/`)).text();
      const sessions = (JSON.parse(status) as { sessions: Array<{ id: string; instances: number }> }).sessions;
      expect(sessions).toEqual([expect.objectContaining({ id: expected, instances: 2 })]);
      expect(JSON.parse(status).cluster.session_secret).toBe("agreed");
      for (const text of [status, page, ...n.logs]) {
        for (const s of [Buffer.from(secret).toString("hex"), fingerprintOf(secret), T1, T2])
          expect(text).not.toContain(s);
      }
    }
  }, 20_000);
});
