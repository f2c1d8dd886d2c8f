/**
 * The ways the contract suite (tests/contract/protocol.case.ts) reaches a
 * relay, one `Runner` each: how a relay is started for a block of cases, how a
 * connection to it is opened, and what its transport cannot carry. The suite
 * is written against these alone, as hono's router cases are against
 * `newRouter`; each tests/contract/*.test.ts passes one or more.
 */
import type { Channel, Sleeper } from "./channels.ts";
import { openStream, openWebSocket, streamSleeper, webSocketSleeper } from "./channels.ts";
import type { RelayHandle, StartRelay } from "./relay.ts";
import { TEST_CA, TLS_FLAGS, viaTunnel } from "./transport.ts";

/**
 * What some cases rely on and some transports do not give, each runner saying why in the words the
 * skipped case's name shows.
 */
export type Trait =
  /** Bytes cross as they are written: a frame can be cut across writes, or left half-sent. */
  | "byte stream"
  /** A frame past --max-message-size reaches the relay, which answers it and keeps the connection. */
  | "oversized frames answered"
  /** A frame header that came alone reaches the relay alone, which answers it (README, "First update without the 40 ms wait"). */
  | "lone header answered";

/** A relay started for one block of cases, and how to reach it. */
export interface Reached {
  /** Resolves with the first event of that name in the relay's log, past or future. */
  waitForEvent: RelayHandle["waitForEvent"];
  /** A new connection to the relay, over the runner's transport. */
  open(): Promise<Channel>;
  /** A peer that registers as `name` and then reads nothing. */
  sleeper(name: string): Promise<Sleeper>;
  stop(): Promise<void>;
}

export interface Runner {
  /** Starts every describe block's name. */
  readonly label: string;
  /** The traits this transport lacks, each with the reason a case needing it is skipped. */
  readonly lacks: Partial<Readonly<Record<Trait, string>>>;
  start(flags: string[]): Promise<Reached>;
}

const CARRIES_MESSAGES = "a WebSocket carries whole messages, one frame body each";
const WS_CLOSES_OVERSIZED =
  "a WebSocket message past --max-message-size is closed with 1009 before the relay reads it" +
  ' (docs/protocol.md, "WebSocket carriage"; tests/e2e/websocket.test.ts)';

function reached(relay: RelayHandle, open: () => Promise<Channel>, sleeper: Reached["sleeper"]): Reached {
  return { waitForEvent: relay.waitForEvent, open, sleeper, stop: () => relay.stop() };
}

/** Plain TCP to the relay's port. */
export function overTcp(label: string, start: StartRelay): Runner {
  return {
    label,
    lacks: {},
    async start(flags) {
      const relay = await start(flags);
      return reached(
        relay,
        () => openStream(relay.port),
        (name) => streamSleeper(relay.port, name),
      );
    },
  };
}

/** TLS to the relay's --tls-port, trusting the test certificate. */
export function overTls(label: string, start: StartRelay): Runner {
  const ca = { ca: TEST_CA };
  return {
    label,
    lacks: {},
    async start(flags) {
      const relay = await start([...flags, ...TLS_FLAGS]);
      const port = relay.tlsPort!;
      return reached(
        relay,
        () => openStream(port, ca),
        (name) => streamSleeper(port, name, ca),
      );
    },
  };
}

/** A WebSocket straight to the relay's /relay, without Origin, as Sova's tunnel connects. */
export function overWebSocket(label: string, start: StartRelay): Runner {
  return {
    label,
    lacks: {
      "byte stream": CARRIES_MESSAGES,
      "lone header answered": CARRIES_MESSAGES,
      "oversized frames answered": WS_CLOSES_OVERSIZED,
    },
    async start(flags) {
      const relay = await start([...flags, "--http-port", "any"]);
      const url = `ws://127.0.0.1:${relay.httpPort}/relay`;
      return reached(
        relay,
        () => openWebSocket(url),
        (name) => webSocketSleeper(url, name),
      );
    },
  };
}

/**
 * Plain TCP to an in-process `sova-relay tunnel`, which carries it to the relay's /relay (ws) or TLS port (tls). The
 * tunnel reads Sova's frames whole, and answers a lone header itself, as the relay would.
 */
export function overTunnel(label: string, start: StartRelay, scheme: "ws" | "tls"): Runner {
  return overTcp(label, viaTunnel(start, scheme));
}
