/**
 * The load generator's instances over a WebSocket straight to the relay's /relay
 * (no tunnel), with the parts of RelayClient the generator uses: one frame body
 * per binary message each way. It measures what the WebSocket path costs the
 * relay, apart from what a tunnel adds.
 */
import { type RelayClient, registerMessage } from "../src/client/client.ts";
import { RelayError } from "../src/lib/errors.ts";
import { createFrameReader } from "../src/protocol/framing.ts";
import { decodeMessage, encodeFrame, type Message, type Uuid } from "../src/protocol/messages.ts";

export async function connectWs(url: string, headers: Record<string, string> = {}): Promise<RelayClient> {
  const ws = new WebSocket(url, { perMessageDeflate: false, headers } as Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  const frameHandlers: Array<(body: Uint8Array) => void> = [];
  const waiting: Array<{ match: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  let id: Uuid | null = null;
  let isClosed = false;
  const closed = new Promise<void>((resolve) =>
    ws.addEventListener("close", () => {
      isClosed = true;
      resolve();
    }),
  );
  ws.addEventListener("message", (ev) => {
    const body = new Uint8Array(ev.data as ArrayBuffer);
    for (const h of frameHandlers) h(body);
    if (waiting.length === 0 || body[2] === 0x53 /* "StateBroadcast": not waited for */) return;
    const m = decodeMessage(body);
    const i = waiting.findIndex((w) => w.match(m));
    if (i !== -1) waiting.splice(i, 1)[0]!.resolve(m);
  });
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", (ev) => reject(new RelayError("E_CLIENT", (ev as ErrorEvent).message)));
  });
  // Whole frames in, bodies out: the generator hands over length-prefixed frames.
  const splitter = createFrameReader(0xffffffff, { frame: (body) => ws.send(body), oversized() {} });
  const wait = (match: (m: Message) => boolean, ms: number) =>
    new Promise<Message>((resolve, reject) => {
      const t = setTimeout(() => reject(new RelayError("E_CLIENT", `no answer within ${ms} ms`)), ms);
      waiting.push({
        match,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  const send = (m: Message) => splitter.push(encodeFrame(m));
  const unsupported = () => {
    throw new RelayError("E_CLIENT", "not supported by the benchmark's WebSocket client");
  };
  return {
    get id() {
      return id;
    },
    decodeErrors: [],
    unread: [],
    get isClosed() {
      return isClosed;
    },
    get pendingBytes() {
      return ws.bufferedAmount;
    },
    closed,
    async register(reg) {
      send(registerMessage(reg));
      const m = await wait((x) => x.type === "RegistrationResponse" || x.type === "Error", 20_000);
      if (m.type !== "RegistrationResponse") throw new RelayError("E_CLIENT", m.type === "Error" ? m.message : m.type);
      id = m.assigned_id;
      return m;
    },
    sendUpdate: unsupported,
    send,
    sendRaw: (bytes) => splitter.push(bytes),
    async ping(timestamp = 1n, ms = 5000) {
      send({ type: "Ping", timestamp });
      await wait((x) => x.type === "Pong" && x.timestamp === timestamp, ms);
      return timestamp;
    },
    next: unsupported,
    onMessage: unsupported,
    onFrame: (h) => void frameHandlers.push(h),
    close: () => ws.close(1000),
  };
}
