/**
 * Players behind tunnels for the resumption tests: an in-process
 * `sova-relay tunnel` whose events are kept with the time they happened, and a
 * double of today's Sova client behind it editing at a steady pace.
 */
import { byteArrayValues } from "../../src/protocol/messages.ts";
import { createLogger, type LogEvent } from "../../src/lib/log.ts";
import { parseTargets, startTunnel, type RunningTunnel, type TunnelOptions } from "../../src/tunnel/tunnel.ts";
import {
  type Delivery,
  delivery,
  lastArrived,
  type PacedPlayer,
  pacePlayer,
  receivedFrom,
  seqOf,
} from "../../bench/paced-players.ts";
import { connectSovaDouble, type SovaDouble } from "./sova-double.ts";

export interface TunnelEvent {
  event: LogEvent;
  /** Date.now() when it was logged. */
  at: number;
  [field: string]: unknown;
}

export interface WatchedTunnel extends RunningTunnel {
  readonly events: TunnelEvent[];
  /** The first event of that name (past or future) `where` accepts. */
  event(name: LogEvent, where?: (e: TunnelEvent) => boolean, timeoutMs?: number): Promise<TunnelEvent>;
}

/** An in-process tunnel to `to` (one address or several), stopped by `cleanups`. */
export function tunnel(
  to: string[],
  cleanups: Array<() => void | Promise<void>>,
  options: Partial<TunnelOptions> = {},
): WatchedTunnel {
  const events: TunnelEvent[] = [];
  const waiters: Array<{ match: (e: TunnelEvent) => boolean; resolve: (e: TunnelEvent) => void }> = [];
  const log = createLogger({
    level: "debug",
    format: "json",
    write(line) {
      const e = { ...JSON.parse(line), at: Date.now() } as TunnelEvent;
      events.push(e);
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!.match(e)) waiters.splice(i, 1)[0]!.resolve(e);
    },
  });
  const running = startTunnel({ listenHost: "127.0.0.1", listenPort: 0, targets: parseTargets(to), ...options }, log);
  cleanups.push(() => running.stop());
  return Object.assign(running, {
    events,
    event(name: LogEvent, where: (e: TunnelEvent) => boolean = () => true, timeoutMs = 20_000) {
      const match = (e: TunnelEvent) => e.event === name && where(e);
      const found = events.find(match);
      if (found) return Promise.resolve(found);
      const { promise, resolve, reject } = Promise.withResolvers<TunnelEvent>();
      const timer = setTimeout(() => reject(new Error(`no ${name} from the tunnel within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({
        match,
        resolve(e) {
          clearTimeout(timer);
          resolve(e);
        },
      });
      return promise;
    },
  });
}

export interface Player extends PacedPlayer {
  /** Resolves once `other` has handled this player's edit number `count` (and, in order, those before it). */
  editsSeenBy(other: Player, count: number, timeoutMs?: number): Promise<void>;
  /** Resolves once this player has made `count` edits. */
  editsMade(count: number): Promise<void>;
}

/**
 * Doubles of Sova behind each tunnel, registered as each name, then all editing every 20 ms (once all are in, so
 * none misses another's first edits, which without history no newcomer gets).
 */
export async function players(through: Array<[{ port: number }, string]>): Promise<Player[]> {
  const doubles = await Promise.all(through.map(([t, name]) => connectSovaDouble(t.port, name)));
  return doubles.map((sova, i) => pace(through[i]![1], sova));
}

/** A double of Sova behind `through`, registered as `name`, editing every 20 ms. */
export async function player(through: { port: number }, name: string): Promise<Player> {
  return pace(name, await connectSovaDouble(through.port, name));
}

function pace(name: string, sova: SovaDouble): Player {
  const paced = pacePlayer(name, sova, 20);
  const self: Player = Object.assign(paced, {
    async editsSeenBy(other: Player, count: number, timeoutMs = 20_000) {
      await paced.made(count);
      const seen = other.sova.handledWhere(
        (m) =>
          m.type === "StateBroadcast" &&
          m.source_instance_name === name &&
          seqOf(byteArrayValues(m.update_data)) === count - 1,
      );
      let timer: Timer | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${other.name} did not get ${name}'s edit ${count - 1} within ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      await Promise.race([seen, late]).finally(() => clearTimeout(timer));
    },
    editsMade: (count: number) => paced.made(count),
  });
  return self;
}

/** Stops both players; what each had of the other's edits once the last of them arrived (or 10 s passed). */
export async function allDelivered(a: Player, b: Player): Promise<Delivery[]> {
  await Promise.all([a.stop(), b.stop()]);
  await Promise.all([lastArrived(b.sova, a, 10_000), lastArrived(a.sova, b, 10_000)]);
  return [delivery(a.sent, receivedFrom(b.sova, a.name)), delivery(b.sent, receivedFrom(a.sova, b.name))];
}
