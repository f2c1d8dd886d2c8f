/**
 * A typed client for the relay protocol, used by the tests, the benchmark and
 * the health check. It decodes what it receives as strictly as a Sova instance
 * does (no extension variants unless it asked for them) and records anything it
 * could not decode in `decodeErrors`, so a test can prove the relay sent nothing
 * a Sova instance would choke on.
 */
import type { Socket } from "bun";
import { withTimeout } from "../lib/deadline.ts";
import { RelayError } from "../lib/errors.ts";
import { createFrameReader } from "../protocol/framing.ts";
import {
  byteArrayValues,
  decodeMessage,
  encodeFrame,
  toByteArrayWire,
  type Message,
  type MessageType,
  type RegistrationResponse,
  type Uuid,
} from "../protocol/messages.ts";
import { createOutbox } from "../lib/outbox.ts";

export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export interface ClientOptions {
  host?: string;
  port: number;
  /** Connect with TLS: `ca` trusts a private certificate; `insecure` skips the check (tests only). */
  tls?: boolean | { insecure?: boolean; serverName?: string; ca?: string };
  /**
   * Keep received messages for `next()`. Without it a frame is decoded only while
   * something waits for a message or listens (onMessage); `onFrame` still gets every frame.
   */
  keepInbox?: boolean;
  /** How long `connect` waits. */
  connectTimeoutMs?: number;
  maxMessageSize?: number;
}

export interface RegisterOptions {
  name: string;
  version?: string;
  token?: string | null;
  capabilities?: string[];
}

/** The RegisterInstance for `reg`: today's Sova version, no token and no capabilities unless given. */
export function registerMessage(reg: RegisterOptions): MessageOf<"RegisterInstance"> {
  return {
    type: "RegisterInstance",
    instance_name: reg.name,
    version: reg.version ?? "0.1.0",
    session_token: reg.token ?? null,
    capabilities: reg.capabilities ?? [],
  };
}

export interface WaitOptions<T extends MessageType> {
  timeoutMs?: number;
  where?: (msg: MessageOf<T>) => boolean;
}

export interface RelayClient {
  /** The id the relay assigned, once registered. */
  readonly id: Uuid | null;
  readonly decodeErrors: readonly string[];
  readonly isClosed: boolean;
  /** Bytes queued locally that the socket has not taken yet. */
  readonly pendingBytes: number;
  /** Messages received and not yet taken by `next()` (tests show absence with it, after a round trip). */
  readonly unread: readonly Message[];
  /** Resolves when the connection is gone, whoever closed it. */
  readonly closed: Promise<void>;
  register(options: RegisterOptions): Promise<RegistrationResponse>;
  sendUpdate(data: Uint8Array, timestamp?: bigint): void;
  send(message: Message): void;
  /** Arbitrary bytes, for tests of what the relay does with bad input. */
  sendRaw(bytes: Uint8Array): void;
  ping(timestamp?: bigint, timeoutMs?: number): Promise<bigint>;
  /** The first unconsumed message of this type (any type when omitted), waiting for it if needed. */
  next<T extends MessageType>(type: T, options?: WaitOptions<T>): Promise<MessageOf<T>>;
  /** Called for every message as it arrives (also when the inbox is off). */
  onMessage(handler: (msg: Message) => void): void;
  /** Called with every raw frame body (the benchmark reads its send time from it). */
  onFrame(handler: (body: Uint8Array) => void): void;
  close(): void;
}

interface Waiter {
  types: readonly MessageType[];
  where?: (msg: Message) => boolean;
  resolve: (msg: Message) => void;
  reject: (error: Error) => void;
  timer: Timer;
}

export const DEFAULT_TIMEOUT_MS = 5000;

export function updateValues(msg: MessageOf<"StateBroadcast"> | MessageOf<"StateUpdate">): Uint8Array {
  return byteArrayValues(msg.update_data);
}

export async function connect(options: ClientOptions): Promise<RelayClient> {
  const keepInbox = options.keepInbox ?? true;
  const inbox: Message[] = [];
  const waiters: Waiter[] = [];
  const decodeErrors: string[] = [];
  const messageHandlers: Array<(msg: Message) => void> = [];
  const frameHandlers: Array<(body: Uint8Array) => void> = [];
  let extensions = false;
  let id: Uuid | null = null;
  let isClosed = false;
  const { promise: closed, resolve: resolveClosed } = Promise.withResolvers<void>();

  const reader = createFrameReader(options.maxMessageSize ?? 0xffffffff, {
    frame(body) {
      for (const h of frameHandlers) h(body);
      // Nobody would read it: a crowd's RegistrationResponses list thousands of others each.
      if (!keepInbox && waiters.length === 0 && messageHandlers.length === 0) return;
      let msg: Message;
      try {
        msg = decodeMessage(body, { extensions });
      } catch (error) {
        decodeErrors.push((error as Error).message);
        return;
      }
      for (const h of messageHandlers) h(msg);
      if (!_answerWaiter(waiters, msg) && keepInbox) inbox.push(msg);
    },
    oversized(length) {
      decodeErrors.push(`oversized frame of ${length} bytes`);
    },
  });

  function onClose(): void {
    if (isClosed) return;
    isClosed = true;
    for (const w of waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RelayError("E_CLIENT", `connection closed while waiting for ${w.types.join(" or ")}`));
    }
    resolveClosed();
  }

  let socket: Socket<undefined>;
  const connecting = Bun.connect({
    hostname: options.host ?? "127.0.0.1",
    port: options.port,
    tls: _tlsOption(options.tls),
    socket: {
      data(_s, chunk) {
        reader.push(chunk);
      },
      drain() {
        outbox.flush();
      },
      close: onClose,
      error: onClose,
      connectError: onClose,
      end(s) {
        s.end();
      },
    },
  });
  const outbox = createOutbox(
    {
      write: (bytes) => (socket ? socket.write(bytes) : 0),
      end: () => socket?.end(),
    },
    { maxPendingBytes: Number.MAX_SAFE_INTEGER },
  );
  socket = await _connected(connecting, options);
  // Bun's 120 s socket timeout is not reset by traffic: off, or the client drops after two minutes.
  socket.timeout(0);
  socket.setNoDelay(true);
  outbox.flush();

  function wait(
    types: readonly MessageType[],
    where: ((m: Message) => boolean) | undefined,
    ms: number,
  ): Promise<Message> {
    return _wait(inbox, waiters, isClosed, types, where, ms);
  }

  function next<T extends MessageType>(type: T, options: WaitOptions<T> = {}): Promise<MessageOf<T>> {
    return wait(
      [type],
      options.where as ((m: Message) => boolean) | undefined,
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    ) as Promise<MessageOf<T>>;
  }

  function send(message: Message): void {
    outbox.enqueue(encodeFrame(message));
  }

  return {
    get id() {
      return id;
    },
    decodeErrors,
    get isClosed() {
      return isClosed;
    },
    get pendingBytes() {
      return outbox.pendingBytes;
    },
    get unread() {
      return inbox;
    },
    closed,
    async register(reg) {
      extensions = (reg.capabilities?.length ?? 0) > 0;
      send(registerMessage(reg));
      const answer = (await wait(["RegistrationResponse", "Error"], undefined, DEFAULT_TIMEOUT_MS)) as
        | RegistrationResponse
        | MessageOf<"Error">;
      if (answer.type === "Error") throw new RelayError("E_CLIENT", answer.message);
      id = answer.assigned_id;
      return answer;
    },
    sendUpdate(data, timestamp = BigInt(Date.now())) {
      if (!id) throw new RelayError("E_CLIENT", "register before sending updates");
      send({ type: "StateUpdate", source_instance_id: id, timestamp, update_data: toByteArrayWire(data) });
    },
    send,
    sendRaw(bytes) {
      outbox.enqueue(bytes);
    },
    async ping(timestamp = BigInt(Date.now()), ms = DEFAULT_TIMEOUT_MS) {
      send({ type: "Ping", timestamp });
      const pong = await next("Pong", { timeoutMs: ms, where: (p) => p.timestamp === timestamp });
      return pong.timestamp;
    },
    next,
    onMessage(handler) {
      messageHandlers.push(handler);
    },
    onFrame(handler) {
      frameHandlers.push(handler);
    },
    close() {
      if (!isClosed) socket.end();
    },
  };
}

function _tlsOption(tls: ClientOptions["tls"]) {
  const settings = typeof tls === "object" ? tls : {};
  return tls ? { rejectUnauthorized: !settings.insecure, serverName: settings.serverName, ca: settings.ca } : undefined;
}

/** The socket once connected; a RelayError naming the address when refused, failed or not made in time. */
async function _connected(connecting: Promise<Socket<undefined>>, options: ClientOptions): Promise<Socket<undefined>> {
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const where = `${options.host ?? "127.0.0.1"}:${options.port}`;
  try {
    return await withTimeout(
      connecting,
      timeoutMs,
      () => new RelayError("E_CLIENT", `no connection to ${where} within ${timeoutMs} ms`),
    );
  } catch (error) {
    if (error instanceof RelayError) throw error;
    throw new RelayError("E_CLIENT", `cannot connect to ${where}: ${(error as Error).message}`, { cause: error });
  }
}

/** Hands `msg` to the first waiter it answers; false when none wanted it. */
function _answerWaiter(waiters: Waiter[], msg: Message): boolean {
  const i = waiters.findIndex((w) => w.types.includes(msg.type) && (!w.where || w.where(msg)));
  if (i === -1) return false;
  const [w] = waiters.splice(i, 1);
  clearTimeout(w!.timer);
  w!.resolve(msg);
  return true;
}

/** The first kept message of `types` (and `where`), or the next one to arrive within `ms`. */
function _wait(
  inbox: Message[],
  waiters: Waiter[],
  isClosed: boolean,
  types: readonly MessageType[],
  where: ((m: Message) => boolean) | undefined,
  ms: number,
): Promise<Message> {
  const i = inbox.findIndex((m) => types.includes(m.type) && (!where || where(m)));
  if (i !== -1) return Promise.resolve(inbox.splice(i, 1)[0]!);
  const what = types.join(" or ");
  if (isClosed) return Promise.reject(new RelayError("E_CLIENT", `connection closed while waiting for ${what}`));
  return new Promise((resolve, reject) => {
    const waiter: Waiter = {
      types,
      where,
      resolve,
      reject,
      timer: setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new RelayError("E_CLIENT", `no ${what} within ${ms} ms`));
      }, ms),
    };
    waiters.push(waiter);
  });
}
