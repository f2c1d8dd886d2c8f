/**
 * A Sova instance as the contract suite plays it, over any `Channel`: it
 * registers, sends, waits for what it expects, and decodes what arrives as
 * strictly as a Sova instance does (extension variants only once it asked for
 * a capability), keeping what it could not decode in `decodeErrors`. The same
 * calls as the project's client (src/client/client.ts), which speaks TCP only.
 */
import {
  DEFAULT_TIMEOUT_MS,
  type MessageOf,
  type RegisterOptions,
  registerMessage,
  type WaitOptions,
} from "../../src/client/client.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
  type MessageType,
  type RegistrationResponse,
  toByteArrayWire,
  type Uuid,
} from "../../src/protocol/messages.ts";
import type { Channel } from "./channels.ts";

export interface ChannelClient {
  /** The id the relay assigned, once registered. */
  readonly id: Uuid | null;
  readonly decodeErrors: readonly string[];
  readonly isClosed: boolean;
  /** Received and not yet taken by `next` (a test shows absence with it, after a round trip). */
  readonly unread: readonly Message[];
  readonly closed: Promise<void>;
  /** Resolves with the RegistrationResponse; rejects with the relay's Error message. */
  register(options: RegisterOptions): Promise<RegistrationResponse>;
  send(message: Message): void;
  sendUpdate(data: Uint8Array, timestamp?: bigint): void;
  /** A frame body as it is (a vector's bytes, something undecodable). */
  sendFrame(body: Uint8Array): void;
  /** Raw bytes on a byte stream (see Channel.sendBytes); throws on a message transport. */
  sendBytes(bytes: Uint8Array): Promise<void>;
  ping(timestamp?: bigint, timeoutMs?: number): Promise<bigint>;
  /** The first unread message of this type (matching `where`), waiting for it if needed. */
  next<T extends MessageType>(type: T, options?: WaitOptions<T>): Promise<MessageOf<T>>;
  /** Called with every frame body as it arrives, before it is decoded. */
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

export function channelClient(channel: Channel): ChannelClient {
  const inbox: Message[] = [];
  const waiters: Waiter[] = [];
  const decodeErrors: string[] = [];
  let extensions = false;
  let id: Uuid | null = null;
  let isClosed = false;

  channel.onFrame((body) => {
    let msg: Message;
    try {
      msg = decodeMessage(body, { extensions });
    } catch (error) {
      decodeErrors.push((error as Error).message);
      return;
    }
    const i = waiters.findIndex((w) => w.types.includes(msg.type) && (!w.where || w.where(msg)));
    if (i === -1) return void inbox.push(msg);
    const [w] = waiters.splice(i, 1);
    clearTimeout(w!.timer);
    w!.resolve(msg);
  });
  void channel.closed.then(() => {
    isClosed = true;
    for (const w of waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection closed while waiting for ${w.types.join(" or ")}`));
    }
  });

  function wait(types: readonly MessageType[], where: ((m: Message) => boolean) | undefined, ms: number) {
    const i = inbox.findIndex((m) => types.includes(m.type) && (!where || where(m)));
    if (i !== -1) return Promise.resolve(inbox.splice(i, 1)[0]!);
    const what = types.join(" or ");
    if (isClosed) return Promise.reject(new Error(`connection closed while waiting for ${what}`));
    return new Promise<Message>((resolve, reject) => {
      const waiter: Waiter = {
        types,
        where,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no ${what} within ${ms} ms`));
        }, ms),
      };
      waiters.push(waiter);
    });
  }

  function next<T extends MessageType>(type: T, options: WaitOptions<T> = {}): Promise<MessageOf<T>> {
    const where = options.where as ((m: Message) => boolean) | undefined;
    return wait([type], where, options.timeoutMs ?? DEFAULT_TIMEOUT_MS) as Promise<MessageOf<T>>;
  }

  const send = (message: Message) => channel.sendFrame(encodeMessage(message));

  return {
    get id() {
      return id;
    },
    decodeErrors,
    get isClosed() {
      return isClosed;
    },
    unread: inbox,
    closed: channel.closed,
    async register(reg) {
      extensions = (reg.capabilities?.length ?? 0) > 0;
      send(registerMessage(reg));
      const answer = await wait(["RegistrationResponse", "Error"], undefined, DEFAULT_TIMEOUT_MS);
      if (answer.type === "Error") throw new Error(answer.message);
      id = (answer as RegistrationResponse).assigned_id;
      return answer as RegistrationResponse;
    },
    send,
    sendUpdate(data, timestamp = BigInt(Date.now())) {
      if (!id) throw new Error("register before sending updates");
      send({ type: "StateUpdate", source_instance_id: id, timestamp, update_data: toByteArrayWire(data) });
    },
    sendFrame: (body) => channel.sendFrame(body),
    sendBytes(bytes) {
      if (!channel.sendBytes) throw new Error("this transport carries whole frames, not a byte stream");
      return channel.sendBytes(bytes);
    },
    async ping(timestamp = BigInt(Date.now()), ms = DEFAULT_TIMEOUT_MS) {
      send({ type: "Ping", timestamp });
      return (await next("Pong", { timeoutMs: ms, where: (p) => p.timestamp === timestamp })).timestamp;
    },
    next,
    onFrame: (handler) => channel.onFrame(handler),
    close: () => channel.close(),
  };
}

/** The clients one test opens, closed after it whatever happened. */
export class ChannelPool {
  private readonly clients: ChannelClient[] = [];
  constructor(private readonly open: () => Promise<Channel>) {}

  async connect(): Promise<ChannelClient> {
    const c = channelClient(await this.open());
    this.clients.push(c);
    return c;
  }

  async register(name: string, options: Partial<RegisterOptions> = {}): Promise<ChannelClient> {
    const c = await this.connect();
    await c.register({ name, ...options });
    return c;
  }

  closeAll(): void {
    for (const c of this.clients.splice(0)) c.close();
  }
}
