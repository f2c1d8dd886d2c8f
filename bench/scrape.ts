/**
 * `bun bench/scrape.ts [--binary PATH | --source DIR] [--http-port N] [--scrapes N]`: what a /metrics scrape
 * costs the relay, with 40 instances in 8 sessions connected: milliseconds per
 * scrape (sequential, as seen by the scraper), the relay's CPU per scrape, and
 * its resident memory before and after the scrapes.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect, type RelayClient } from "../src/client/client.ts";
import { cpuSecondsOf, rssOf } from "./relay-process.ts";

const { values } = parseArgs({
  options: {
    binary: { type: "string" },
    // Another checkout's source, for before-figures; one from before `--http-port any` needs a port number.
    source: { type: "string", default: join(import.meta.dir, "..") },
    "http-port": { type: "string", default: "any" },
    scrapes: { type: "string", default: "500" },
  },
});
const scrapes = Number(values.scrapes);
const command = values.binary ? [values.binary] : [process.execPath, join(values.source!, "src/main.ts")];
const tokens = Array.from({ length: 8 }, (_, i) => `scrape-bench-session-token-${i}`);
const proc = Bun.spawn(
  [
    ...command,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--http-port",
    values["http-port"]!,
    "--log-format",
    "json",
    "--max-connections-per-ip",
    "100",
    "--max-instances",
    "100",
    ...tokens.flatMap((t) => ["--token", t]),
  ],
  { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
);

/**
 * The relay's TCP and HTTP ports, from the events it logs once listening; stderr is read to the end, or the relay's
 * writes would fail.
 */
function ports(): Promise<{ tcp: number; http: number }> {
  const { promise, resolve, reject } = Promise.withResolvers<{ tcp: number; http: number }>();
  void (async () => {
    const found: { tcp?: number; http?: number } = {};
    let pending = "";
    for await (const chunk of proc.stderr) {
      pending += new TextDecoder().decode(chunk);
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const e = JSON.parse(line) as { event: string; port: number };
        if (e.event === "listening") found.tcp = e.port;
        if (e.event === "http_listening") found.http = e.port;
        if (found.tcp && found.http) resolve(found as { tcp: number; http: number });
      }
    }
    reject(new Error("relay exited before listening"));
  })();
  return promise;
}

const { tcp, http } = await ports();
const clients: RelayClient[] = [];
for (let i = 0; i < 40; i++) {
  const c = await connect({ port: tcp });
  await c.register({ name: `bench-${i}`, token: tokens[i % tokens.length] });
  clients.push(c);
}
for (const c of clients.slice(0, 8)) c.sendUpdate(new Uint8Array(64), 1n);
const url = `http://127.0.0.1:${http}/metrics`;
for (let i = 0; i < 20; i++) await (await fetch(url)).text(); // warm-up
Bun.gc(true);
const rssBefore = rssOf(proc.pid)!;
const cpuBefore = cpuSecondsOf(proc.pid)!;
let bytes = 0;
const start = performance.now();
for (let i = 0; i < scrapes; i++) bytes = (await (await fetch(url)).text()).length;
const ms = performance.now() - start;
const cpu = cpuSecondsOf(proc.pid)! - cpuBefore;
const rssAfter = rssOf(proc.pid)!;
console.log(`${values.binary ?? values.source}: ${scrapes} scrapes of ${bytes} bytes`);
console.log(
  `  ${(ms / scrapes).toFixed(3)} ms per scrape (wall), relay CPU ${((cpu * 1000) / scrapes).toFixed(3)} ms per scrape`,
);
console.log(`  relay RSS ${rssBefore.toFixed(1)} MB before, ${rssAfter.toFixed(1)} MB after`);
for (const c of clients) c.close();
proc.kill("SIGTERM");
await proc.exited;
