/**
 * `/events`: the status page's live part as server-sent events, rendered once a
 * tick for every open page. Bounded: at most maxEventSubscribers streams, and
 * maxEventSubscribersPerAddress from one address (IPv6: /64); a stream whose
 * socket has not taken maxEventBacklogBytes is cut as not reading; each ends
 * after maxEventStreamBytes (the page's EventSource reconnects).
 *
 * Four visitors once held all 32 streams and the operator's own page got 503
 * until they left (issue 27). A few slots are now kept for the operator (loopback,
 * or --operator ranges): visitors get the rest, and when even the operator's are
 * taken, the oldest visitor's stream gives way to the operator's page.
 */
import { addressGroup, type Cidr, cidrContains, parseCidr } from "../lib/cidr.ts";
import type { Logger } from "../lib/log.ts";
import { createKindTallyLine } from "../lib/repeats.ts";
import type { EventStreamStats } from "./metrics.ts";
import { renderLive } from "./page.ts";
import { snapshot, type StatusContext } from "./status.ts";

export const SECURITY_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

export const EVENT_HEADERS = {
  ...SECURITY_HEADERS,
  "Content-Type": "text/event-stream; charset=utf-8",
  Connection: "keep-alive",
};

export interface EventLimits {
  eventIntervalMs: number;
  maxEventSubscribers: number;
  maxEventSubscribersPerAddress: number;
  maxEventBacklogBytes: number;
  maxEventStreamBytes: number;
  /** Addresses whose pages always get a stream, beside loopback. */
  operator?: readonly Cidr[];
  /** The window of the `events_limited` line (tests only; 10 s). */
  logWindowMs?: number;
}

export interface EventStreams {
  /** A stream for a page from `ip`, or 503 saying why not. */
  subscribe(ip: string): Response;
  readonly stats: Readonly<EventStreamStats>;
  stop(): void;
}

interface Subscriber {
  controller: ReadableStreamDefaultController<Uint8Array>;
  sent: number;
  group: string;
  /** From loopback or --operator: takes the reserved slots, and a visitor's when all are taken. */
  operator: boolean;
}

const LOOPBACK = [parseCidr("127.0.0.0/8"), parseCidr("::1/128")];

/** Streams only the operator's pages may take: of 32, 4. */
function reservedSlots(max: number): number {
  return Math.min(4, Math.max(1, Math.floor(max / 8)));
}

const encoder = new TextEncoder();

export function createEventStreams(o: EventLimits, ctx: StatusContext, log: Logger): EventStreams {
  const subscribers = new Set<Subscriber>();
  const perGroup = new Map<string, number>();
  const stats: EventStreamStats = { subscribers: 0, refused: 0, cut: 0, rotated: 0, yielded: 0, gone: 0 };
  const reserved = reservedSlots(o.maxEventSubscribers);
  const operators = [...LOOPBACK, ...(o.operator ?? [])];
  let visitors = 0;
  let ticker: Timer | null = null;
  // One line per 10 s at most, with counts, whatever a flood of pages does; a burst's tail is written when
  // its 10 s end. The reason is the last kind counted.
  const limited = createKindTallyLine(o.logWindowMs ?? 10_000, ["refused", "cut"] as const, (unlogged, kind) =>
    log.warn(
      "events_limited",
      `/events: ${unlogged.cut} subscribers cut for not reading (over ${o.maxEventBacklogBytes} bytes unsent),` +
        ` ${unlogged.refused} refused past ${o.maxEventSubscribers} open (since the last such line)`,
      { reason: kind === "cut" ? "not_reading" : "subscriber_cap", cut: unlogged.cut, refused: unlogged.refused },
    ),
  );

  function note(kind: "refused" | "cut"): void {
    stats[kind]++;
    limited.add(kind);
  }

  function drop(sub: Subscriber): void {
    if (!subscribers.delete(sub)) return;
    if (!sub.operator) visitors--;
    const n = (perGroup.get(sub.group) ?? 1) - 1;
    if (n <= 0) perGroup.delete(sub.group);
    else perGroup.set(sub.group, n);
    stats.subscribers = subscribers.size;
    if (subscribers.size === 0 && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  /** Queues an event; cuts the subscriber when its stream has not taken what it was given. */
  function send(sub: Subscriber, event: Uint8Array): void {
    // With a byte-length strategy and no high-water mark, -desiredSize is what
    // is queued in the stream and not yet taken by the socket.
    if (-(sub.controller.desiredSize ?? 0) + event.byteLength > o.maxEventBacklogBytes) {
      drop(sub);
      note("cut");
      try {
        sub.controller.error(new Error("subscriber not reading"));
      } catch {}
      return;
    }
    try {
      sub.controller.enqueue(event);
    } catch {
      // The stream closed without its cancel being called: the event goes nowhere, and is counted.
      stats.gone++;
      drop(sub);
      return;
    }
    sub.sent += event.byteLength;
    if (sub.sent >= o.maxEventStreamBytes) {
      // What a stream can hold in kernel buffers for a peer that stopped reading is bounded by this.
      drop(sub);
      stats.rotated++;
      sub.controller.close();
    }
  }

  function push(): void {
    if (subscribers.size === 0) return;
    // Rendered once per tick, whatever the number of open pages.
    const event = encoder.encode(`event: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`);
    for (const sub of subscribers) send(sub, event);
  }

  /** Why a page from `group` gets no stream now; null: it does (an operator's may end a visitor's). */
  function noSlot(group: string, operator: boolean): string | null {
    if ((perGroup.get(group) ?? 0) >= o.maxEventSubscribersPerAddress)
      return `too many live status pages open from your address (${o.maxEventSubscribersPerAddress})`;
    if (!operator) {
      if (visitors < o.maxEventSubscribers - reserved) return null;
      return `too many live status pages open (${o.maxEventSubscribers - reserved}; ${reserved} kept for the operator)`;
    }
    if (subscribers.size < o.maxEventSubscribers) return null;
    // Full, and the operator wants one: the oldest visitor's stream gives way (its page reconnects later).
    for (const sub of subscribers) {
      if (sub.operator) continue;
      drop(sub);
      stats.yielded++;
      try {
        sub.controller.close();
      } catch {}
      return null;
    }
    return `too many live status pages open (${o.maxEventSubscribers})`;
  }

  return {
    stats,
    subscribe(ip) {
      const group = addressGroup(ip);
      const operator = operators.some((c) => cidrContains(c, ip));
      const full = noSlot(group, operator);
      if (full !== null) {
        note("refused");
        return new Response(`${full}; try again later\n`, {
          status: 503,
          headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain", "Retry-After": "10" },
        });
      }
      let self: Subscriber;
      const stream = new ReadableStream<Uint8Array>(
        {
          start(controller) {
            self = { controller, sent: 0, group, operator };
            subscribers.add(self);
            if (!operator) visitors++;
            perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
            stats.subscribers = subscribers.size;
            send(
              self,
              encoder.encode(`retry: 2000\nevent: status\ndata: ${JSON.stringify(renderLive(snapshot(ctx)))}\n\n`),
            );
            ticker ??= setInterval(push, o.eventIntervalMs);
          },
          cancel() {
            drop(self);
          },
        },
        { highWaterMark: 0, size: (chunk) => chunk?.byteLength ?? 0 },
      );
      return new Response(stream, { headers: EVENT_HEADERS });
    },
    stop() {
      if (ticker) clearInterval(ticker);
      limited.stop();
      for (const sub of subscribers) {
        try {
          sub.controller.close();
        } catch {}
      }
      subscribers.clear();
    },
  };
}
