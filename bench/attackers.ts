/**
 * Hostile clients for the benchmark's `hostile` scenario, in their own process so
 * their work does not count as the generator's. Each attack comes from its own
 * loopback addresses (127.0.0.x), as a botnet would, so per-address caps alone
 * do not stop it. Prints one JSON line of what it did when the time is up.
 *
 *   bun bench/attackers.ts --port P --token T --duration S [--http-port H] [--one-address]
 *
 * With --http-port, the attacks of issue 27 on the HTTP side too: silent WebSocket
 * upgrades holding the handshake slots, a web page's Origin joining, /events
 * streams from four visitors (through a proxy at 127.0.0.1 the relay trusts).
 *
 * `--one-address`: everything from 127.0.0.1 (through a container's port mapping every
 * connection comes from one address anyway, and other loopback sources may not pass it).
 */
import net from "node:net";
import { frameOf } from "../src/protocol/framing.ts";
import { encodeMessage, toByteArrayWire } from "../src/protocol/messages.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) {
  if (process.argv[i] === "--one-address") i--;
  else args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1]!);
}
const port = Number(args.get("port"));
const httpPort = args.has("http-port") ? Number(args.get("http-port")) : null;
const token = args.get("token") ?? null;
const version = args.get("version") ?? "0.1.0";
const until = Date.now() + Number(args.get("duration") ?? 10) * 1000;
const counts: Record<string, number> = {};
const bump = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);
const oneAddress = process.argv.includes("--one-address");
let nextAddress = 2;
const address = () => (oneAddress ? "127.0.0.1" : `127.0.0.${2 + (nextAddress++ % 250)}`);
let names = 0;

const register = (name: string, extra: Record<string, unknown> = {}) =>
  frameOf(
    encodeMessage({
      type: "RegisterInstance",
      instance_name: name,
      version,
      session_token: token,
      capabilities: [],
      ...extra,
    }),
  );

/** One connection from `from`; resolves when it closes. */
function open(from: string, onConnect: (s: net.Socket) => void, read = false): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: from });
    // Whatever the relay does, no attack waits on one connection for ever.
    s.setTimeout(15_000, () => s.destroy());
    s.on("connect", () => {
      if (!read) s.pause();
      onConnect(s);
    });
    s.on("error", () => {});
    s.on("close", () => resolve());
  });
}

/** Runs `attack` again and again until the time is up. */
async function loop(name: string, attack: () => Promise<void>): Promise<void> {
  while (Date.now() < until) {
    bump(name);
    await attack();
  }
}

const attacks: Array<Promise<void>> = [];

// 1. Unregistered connections that never read, flooding empty frames.
for (let i = 0; i < 10; i++) {
  const from = address();
  attacks.push(loop("empty_frame_flood", () => open(from, (s) => s.write(new Uint8Array(800_000)))));
}
// 5. Unregistered connections holding a partial frame: 1 MiB announced, or just under the handshake cap.
for (let i = 0; i < 100; i++) {
  const from = oneAddress ? "127.0.0.1" : `127.0.0.${2 + (i % 25)}`;
  const head = new Uint8Array(4);
  const big = i % 2 === 0;
  new DataView(head.buffer).setUint32(0, big ? 1 << 20 : 4096);
  attacks.push(
    loop(big ? "partial_frame_1mib" : "partial_frame_4kib", () =>
      open(from, (s) => s.write(Buffer.concat([head, new Uint8Array(4000)]))),
    ),
  );
}
// 4. Registrations carrying as many capabilities as fit.
attacks.push(
  loop("capabilities", () =>
    open(address(), (s) => {
      s.write(
        register(`caps${names++}`, {
          capabilities: Array.from({ length: 120 }, (_, i) => `capability-${i}-${"x".repeat(16)}`),
        }),
      );
      setTimeout(() => s.destroy(), 50);
    }),
  ),
);
// 7. Register/leave churn from one address.
const churnFrom = address();
attacks.push(
  loop("churn", () =>
    open(
      churnFrom,
      (s) => {
        s.write(register(`churn${names++}`));
        s.once("data", () => s.destroy());
      },
      true,
    ),
  ),
);
// 7. Bare connects in a loop from one address.
const connectFrom = address();
attacks.push(loop("connect_flood", () => open(connectFrom, (s) => s.destroy())));
// 3. Late joiners that never read, in a session whose history is full of 16 KB updates.
/**
 * One try at filling the history; true once registered. From an address of its own, tried again until it gets in:
 * from one the partial-frame attackers share it was refused or evicted in 4 runs of 9, and the late
 * joiners then had no history to hold (the relay's peak RSS 20-60 MB lower for a reason of the bench's).
 */
function fillHistory(): Promise<boolean> {
  let filled = false;
  return open(
    oneAddress ? "127.0.0.1" : "127.0.4.1",
    (s) => {
      s.write(register(`filler${names++}`));
      s.once("data", (chunk: Buffer) => {
        const body = chunk.subarray(4);
        // assigned_id: the 16 bytes after the c4 10 header in the RegistrationResponse.
        const at = body.indexOf(Buffer.from([0xc4, 0x10]));
        if (at < 0) return void s.destroy();
        filled = true;
        const id = body.subarray(at + 2, at + 18);
        const payload = toByteArrayWire(new Uint8Array(16_000).fill(5));
        for (let i = 0; i < 1000; i++)
          s.write(
            frameOf(
              encodeMessage({
                type: "StateUpdate",
                source_instance_id: new Uint8Array(id),
                timestamp: BigInt(i),
                update_data: payload,
              }),
            ),
          );
        s.end();
      });
    },
    true,
  ).then(() => filled);
}
attacks.push(
  (async () => {
    while (Date.now() < until) {
      if (await fillHistory()) {
        bump("history_filled");
        break;
      }
      await Bun.sleep(100);
    }
    const late = Array.from({ length: 3 }, () => {
      const from = address();
      return loop("late_joiner_not_reading", () => open(from, (s) => s.write(register(`late${names++}`))));
    });
    await Promise.all(late);
  })(),
);
// A registered instance that pings flat out and never reads the Pongs.
const pingFrom = address();
attacks.push(
  loop("ping_flood_not_reading", () =>
    open(pingFrom, (s) => {
      s.write(register(`pinger${names++}`));
      const ping = frameOf(encodeMessage({ type: "Ping", timestamp: 1n }));
      const flood = Buffer.concat(Array.from({ length: 2000 }, () => ping));
      const timer = setInterval(() => {
        if (Date.now() < until) s.write(flood);
        else {
          clearInterval(timer);
          s.destroy();
        }
      }, 20);
      s.on("close", () => clearInterval(timer));
    }),
  ),
);

// Issue 27, 7: silent connections from 48 more addresses, each reopened as soon as it is closed.
for (let a = 0; a < 48 && !oneAddress; a++)
  for (let i = 0; i < 8; i++) attacks.push(holdSilent(`127.0.1.${a + 1}`, false));
// Issue 27, 4: one address registers every instance it may, and idles (reading, so it is never cut).
attacks.push(
  (async () => {
    const from = address();
    while (Date.now() < until) {
      const ok = await new Promise<boolean>((resolve) =>
        open(
          from,
          (s) => {
            s.write(register(`hog${names++}`));
            s.once("data", (d: Buffer) => {
              const registered = d.length > 6 && d[6] !== 0x45; // not "Error"
              if (registered) bump("hog_registered");
              resolve(registered);
              if (!registered) s.destroy();
            });
          },
          true,
        ),
      ).catch(() => false);
      if (!ok) await Bun.sleep(500);
    }
  })(),
);
// Issue 27, 10: register/leave churn from 100 addresses, each within its own budget.
for (let a = 0; a < 100 && !oneAddress; a++) {
  const from = `127.0.2.${a + 1}`;
  attacks.push(
    loop("churn_many", () =>
      open(
        from,
        (s) => {
          s.write(register(`many${names++}`));
          s.once("data", () => s.destroy());
        },
        true,
      ),
    ),
  );
}
if (httpPort !== null) {
  // Issue 27, 1: two addresses hold every WebSocket handshake slot, reopening each as it is closed.
  for (const from of oneAddress ? ["127.0.0.1"] : [address(), address()])
    for (let i = 0; i < 8; i++) attacks.push(holdSilent(from, true));
  // Issue 27, 5: a web page's Origin joining the attack session.
  attacks.push(
    loop("origin_upgrade", async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/relay`, {
        headers: { Origin: "https://evil.example" },
      } as Bun.WebSocketOptions);
      ws.binaryType = "arraybuffer";
      await new Promise<void>((resolve) => {
        ws.addEventListener("open", () =>
          ws.send(
            encodeMessage({
              type: "RegisterInstance",
              instance_name: `page${names++}`,
              version,
              session_token: token,
              capabilities: [],
            }),
          ),
        );
        ws.addEventListener("message", () => {
          bump("origin_joined");
          ws.close();
        });
        ws.addEventListener("close", () => resolve());
        ws.addEventListener("error", () => resolve());
      });
      await Bun.sleep(200);
    }),
  );
  // Issue 27, 9: four visitors (through the trusted proxy at 127.0.0.1) take every /events stream they can.
  for (let v = 1; v <= 4; v++)
    for (let i = 0; i < 8; i++)
      attacks.push(
        loop("events_streams", async () => {
          const res = await fetch(`http://127.0.0.1:${httpPort}/events`, {
            headers: { "X-Forwarded-For": `198.51.100.${v}` },
          }).catch(() => null);
          if (res?.status !== 200 || !res.body) return void (await Bun.sleep(500));
          bump("events_held");
          // Read, so it is never cut as a page that stopped reading; the relay ends it after 256 KiB.
          const reader = res.body.getReader();
          while (Date.now() < until) if ((await reader.read().catch(() => ({ done: true }))).done) break;
          await reader.cancel().catch(() => {});
        }),
      );
}

/**
 * A connection that never sends a frame (a WebSocket: once upgraded), opened again when it closes, at most
 * every 200 ms: 384 of them make the 800-2,300 connections a second of the review, not whatever the machine
 * allows (which would measure the attackers' CPU, not the relay).
 */
async function holdSilent(from: string, websocket: boolean): Promise<void> {
  const upgrade =
    `GET /relay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  while (Date.now() < until) {
    bump(websocket ? "ws_silent_upgrades" : "tcp_silent_connects");
    const opened = Date.now();
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port: websocket ? httpPort! : port, localAddress: from });
      s.setTimeout(Math.max(1, until - Date.now()), () => s.destroy());
      s.on("connect", () => {
        if (websocket) s.write(upgrade);
        else s.pause();
      });
      s.on("error", () => {});
      s.on("close", () => resolve());
    });
    await Bun.sleep(Math.max(0, 200 - (Date.now() - opened)));
  }
}

setTimeout(
  () => {
    console.log(JSON.stringify(counts));
    process.exit(0);
  },
  until - Date.now() + 500,
);
await Promise.all(attacks);
