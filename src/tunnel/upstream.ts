/**
 * The tunnel's side toward the relay, the same for every transport: frame
 * bodies in and out (a WebSocket carries one per message, TLS and TCP the
 * 4-byte length first), what is queued toward the relay, and one event for each
 * way a connection ends. ws-upstream.ts and stream-upstream.ts implement it.
 */
import type { TunnelTarget } from "./target.ts";

export interface UpstreamEvents {
  /** Connected: frames can be sent. */
  open(): void;
  /** A frame body from the relay, a view valid during the call. */
  frame(body: Uint8Array): void;
  /** Could not connect (it never opened). */
  failed(code: string | undefined, message: string): void;
  /** It was open and ended; `why` for the log. */
  closed(why: string): void;
  /** What is queued toward the relay fell back under the low-water mark. */
  writable(): void;
}

export interface Upstream {
  readonly target: TunnelTarget;
  /** One frame body; copied when it has to wait. */
  send(body: Uint8Array): void;
  /** Bytes given to `send` and not yet taken by the socket. */
  readonly backlog: number;
  /** Stop reading from the relay (the local side is behind), and start again. */
  pause(): void;
  resume(): void;
  /** Send what is queued, then close. */
  close(): void;
  /** Close now, dropping what is queued (the far side stopped answering). */
  terminate(): void;
}

export interface UpstreamOptions {
  /** PEM of the CA(s) to trust instead of the default roots. */
  ca?: string | string[];
  connectTimeoutMs: number;
  /** WebSocket pings this often, so proxies do not close a quiet session (nginx's default read timeout is 60 s). */
  pingIntervalMs: number;
}

/** Past this much queued toward the relay, the local side is not read until it falls under half. */
export const UP_HIGH_WATER = 1024 * 1024;
/** The largest frame read from the relay: a RegistrationResponse listing a crowd, far under this. */
export const MAX_FRAME_FROM_RELAY = 64 * 1024 * 1024;

export function withLength(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}
