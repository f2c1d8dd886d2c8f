/**
 * Used by container-smoke.sh against a relay in a container: N instances
 * register, one update goes from the first to all others, and the instances
 * stay connected until stdin closes (so memory can be measured meanwhile).
 *   bun scripts/smoke-client.ts PORT [N]
 */
import { connect, updateValues, type RelayClient } from "../src/client/client.ts";

const port = Number(process.argv[2]);
const count = Number(process.argv[3] ?? 2);
const clients: RelayClient[] = [];
for (let i = 0; i < count; i++) {
  const c = await connect({ port });
  await c.register({ name: `smoke-${i}` });
  clients.push(c);
}
const payload = new TextEncoder().encode("SetScript d1 [c4 e4 g4]");
clients[0]!.sendUpdate(payload, 1705314615000n);
for (const c of clients.slice(1)) {
  const m = await c.next("StateBroadcast", { timeoutMs: 5000 });
  if (
    m.source_instance_name !== "smoke-0" ||
    m.timestamp !== 1705314615000n ||
    Buffer.compare(updateValues(m), payload) !== 0
  ) {
    console.error("smoke: wrong broadcast", m);
    process.exit(1);
  }
}
console.log(`smoke: ${count} instances registered; an update reached the ${count - 1} others`);
if (process.argv.includes("--hold")) {
  // SIGUSR1: show that the instances held through a hostile pass still play.
  process.on("SIGUSR1", async () => {
    const t = BigInt(Date.now());
    clients[1]!.sendUpdate(payload, t);
    const others = clients.filter((_, i) => i !== 1);
    await Promise.all(
      others.map((c) => c.next("StateBroadcast", { where: (m) => m.timestamp === t, timeoutMs: 5000 })),
    );
    console.log(`smoke: still playing: an update reached the ${others.length} others`);
  });
  console.log("smoke: holding connections until stdin closes");
  for await (const _ of process.stdin) {
  }
}
for (const c of clients) c.close();
