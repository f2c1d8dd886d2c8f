/**
 * One Sova instance stand-in, run where a test cannot reach with its own sockets (another
 * network namespace, a container): registers, waits until every instance named by --with is
 * in its session, sends one update, waits for one from each of them, prints what it saw as one
 * JSON line and exits 0; one line on stderr and exit 1 otherwise.
 *   bun tests/support/play.ts --port 9090 [--host H] --name NAME [--token T] [--with A,B] [--timeout S] [--stay]
 * With --stay it stays connected until it is signalled, so the relay's view of it can be looked at.
 */
import { parseArgs } from "node:util";
import { connect } from "../../src/client/client.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    name: { type: "string" },
    token: { type: "string" },
    with: { type: "string", default: "" },
    timeout: { type: "string", default: "20" },
    stay: { type: "boolean", default: false },
  },
});
const others = values.with ? values.with.split(",") : [];
const timeoutMs = Number(values.timeout) * 1000;

try {
  const client = await connect({ host: values.host, port: Number(values.port), connectTimeoutMs: timeoutMs });
  const reg = await client.register({ name: values.name!, token: values.token ?? null, capabilities: ["presence"] });
  if (!reg.success) throw new Error(`registration refused: ${reg.message}`);
  const present = new Set(reg.current_instances.map((i) => i.name));
  const presentAtStart = [...present].sort();
  while (others.some((o) => !present.has(o)))
    present.add((await client.next("InstanceConnected", { timeoutMs })).instance_name);
  client.sendUpdate(new TextEncoder().encode(`from ${values.name}`), BigInt(Date.now()));
  const got: string[] = [];
  while (got.length < others.length) {
    const m = await client.next("StateBroadcast", { timeoutMs });
    if (others.includes(m.source_instance_name) && !got.includes(m.source_instance_name))
      got.push(m.source_instance_name);
  }
  // The others' updates may all have come before this one left: a round trip before exiting
  // says the relay has taken it (a Pong comes after what was sent before the Ping).
  await client.ping(undefined, timeoutMs);
  console.log(JSON.stringify({ name: values.name, presentAtStart, got: got.sort() }));
  if (values.stay) {
    process.on("SIGTERM", () => process.exit(0));
    await client.closed;
  }
  client.close();
  process.exit(0);
} catch (error) {
  console.error(`play ${values.name}: ${(error as Error).message}`);
  process.exit(1);
}
