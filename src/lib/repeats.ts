/**
 * Log lines that a flood would repeat: the first of each (event, key) in a
 * window is logged as it happens, the rest are counted and logged once when the
 * window ends, under the same event name with a `count`, so an audit reader's
 * totals still add up and the log stays bounded (one address connecting in a
 * loop wrote 19 MB of audit lines in 10 s before this). Time comes from the caller.
 */
import type { LogEvent, Logger } from "./log.ts";

export interface RepeatedEvent<E extends string = string> {
  readonly event: E;
  readonly key: string;
  /** Occurrences not logged individually. */
  readonly count: number;
  readonly fields: Readonly<Record<string, string | number | undefined>>;
}

export interface Repeats<E extends string = string> {
  /** True when this occurrence should be logged now; false when it was counted for the summary. */
  first(event: E, key: string, now: number, fields?: Record<string, string | number | undefined>): boolean;
  /** Summaries of windows that ended by `now`; call from a timer. */
  due(now: number): RepeatedEvent<E>[];
  /** Every pending summary, ended or not (shutdown). */
  drain(): RepeatedEvent<E>[];
  readonly tracked: number;
}

interface _Entry<E extends string> {
  event: E;
  key: string;
  since: number;
  /** Occurrences logged one by one in this window. */
  logged: number;
  count: number;
  fields: Record<string, string | number | undefined>;
}

/** The key the occurrences past the per-second budget are counted under. */
export const MANY = "many addresses";

export interface RepeatsBudget {
  /** Occurrences of one (event, key) logged one by one in a window before the rest are counted (default 1). */
  perKey?: number;
  /** Lines logged one by one as they happen, all keys together, in one second; past it they are counted (default 50). */
  perSecond?: number;
}

export function createRepeats<E extends string = string>(
  windowMs = 60_000,
  maxKeys = 10_000,
  budget: RepeatsBudget = {},
): Repeats<E> {
  const perKey = budget.perKey ?? 1;
  const perSecond = budget.perSecond ?? 50;
  const entries = new Map<string, _Entry<E>>();
  let second = -1;
  let firsts = 0;

  function summary(e: _Entry<E>): RepeatedEvent<E> {
    return { event: e.event, key: e.key, count: e.count, fields: e.fields };
  }

  /** Counts an occurrence under `key`; true when it opened a new window (and should be logged). */
  function note(event: E, key: string, now: number, fields: Record<string, string | number | undefined>): boolean {
    const id = `${event}\u0000${key}`;
    const e = entries.get(id);
    if (e !== undefined && now - e.since < windowMs) {
      e.count++;
      return false;
    }
    entries.set(id, { event, key, since: now, logged: 1, count: 0, fields });
    return true;
  }

  return {
    first(event, key, now, fields = {}) {
      const s = Math.floor(now / 1000);
      if (s !== second) {
        second = s;
        firsts = 0;
      }
      const known = entries.get(`${event}\u0000${key}`);
      const current = known !== undefined && now - known.since < windowMs;
      if (current && (known.logged >= perKey || firsts >= perSecond)) {
        known.count++;
        return false;
      }
      if (current) {
        firsts++;
        known.logged++;
        return true;
      }
      // One address is `perKey` lines a minute; very many addresses (a botnet, or every /64 of
      // one IPv6 host) share a budget of lines a second, and past it or past the key cap
      // their occurrences go into one count under MANY.
      if (firsts < perSecond && entries.size < maxKeys) {
        firsts++;
        entries.set(`${event}\u0000${key}`, { event, key, since: now, logged: 1, count: 0, fields });
        return true;
      }
      if (note(event, MANY, now, { ...fields, ip: MANY })) {
        // The MANY line itself opens its window: count this occurrence in it, logged at the window's end.
        entries.get(`${event}\u0000${MANY}`)!.count++;
      }
      return false;
    },
    due(now) {
      const out: RepeatedEvent<E>[] = [];
      for (const [id, e] of entries) {
        if (now - e.since < windowMs) continue;
        entries.delete(id);
        if (e.count > 0) out.push(summary(e));
      }
      return out;
    },
    drain() {
      const out = [...entries.values()].filter((e) => e.count > 0).map(summary);
      entries.clear();
      return out;
    },
    get tracked() {
      return entries.size;
    },
  };
}

/** Logs each summary under its own event name, with the count that was not logged one by one. */
export function reportRepeats(log: Logger, summaries: readonly RepeatedEvent<LogEvent>[]): void {
  for (const r of summaries) {
    const level = (r.fields.level as "info" | "warn" | "debug" | undefined) ?? "info";
    log[level](
      r.event,
      `${r.count} more '${r.event}' events from ${r.fields.ip ?? r.key} in the last minute (aggregated)`,
      {
        ip: r.fields.ip,
        count: r.count,
        aggregated: true,
      },
    );
  }
}

/**
 * The same throttle for one event with no key (frames NATS refused, frames lost
 * between nodes, attempts to reach a server): the first occurrence is logged at
 * once; later ones are added up and the sum is due when the window ends, so the
 * log says how many without a line for each. Log lines use it through
 * createTallyLine or createKindTallyLine, which write the sum when it is due
 * even if nothing more comes.
 */
export interface Tally {
  /** Adds `amount`; returns the sum to log now (everything since the last line), or 0 to stay quiet. */
  add(amount: number, now: number): number;
  /** When the sum held back can be logged (its window's end), or null when nothing is held. */
  readonly heldUntil: number | null;
}

export function createTally(windowMs: number): Tally {
  let loggedAt = Number.NEGATIVE_INFINITY;
  let pending = 0;
  return {
    add(amount, now) {
      pending += amount;
      if (now - loggedAt < windowMs) return 0;
      loggedAt = now;
      const sum = pending;
      pending = 0;
      return sum;
    },
    get heldUntil() {
      return pending > 0 ? loggedAt + windowMs : null;
    },
  };
}

/**
 * A Tally that writes its own lines, and writes what it held back when its window ends even if nothing more
 * comes: with a Tally alone, a burst's count waited for the next occurrence, and without one never reached
 * the log. The timer is unref'd (it never keeps a process up). A line that names something (a host, a
 * reason, a node) names the last one counted in it: `detail`, kept here rather than beside each line.
 */
export interface TallyLine<D = undefined> {
  add(amount: number, detail?: D): void;
  /** Writes what is held now (shutdown) and clears the timer; nothing is added after. */
  stop(): void;
}

export function createTallyLine<D = undefined>(
  windowMs: number,
  report: (sum: number, last: D) => void,
  clock: () => number = () => performance.now(),
): TallyLine<D> {
  const tally = createTally(windowMs);
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  let last = undefined as D;
  // Also on a timer that fired a little early by `clock`: then the sum is still held, and the timer set again.
  function arm(): void {
    const until = tally.heldUntil;
    if (timer !== null || until === null) return;
    timer = setTimeout(flush, Math.max(1, until - clock()));
    timer.unref?.();
  }
  function flush(): void {
    timer = null;
    const sum = tally.add(0, clock());
    if (sum > 0) report(sum, last);
    arm();
  }
  return {
    add(amount, detail) {
      if (stopped) return;
      if (detail !== undefined) last = detail;
      const sum = tally.add(amount, clock());
      if (sum > 0) report(sum, last);
      arm();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      const sum = tally.add(0, Number.POSITIVE_INFINITY);
      if (sum > 0) report(sum, last);
    },
  };
}

/**
 * A TallyLine for occurrences of several kinds that one line reports together (spectators refused and cut):
 * `report` gets every kind's count since the last line, and the kind counted last (the line's reason).
 */
export interface KindTallyLine<K extends string> {
  add(kind: K): void;
  /** Writes what is held now (shutdown) and clears the timer; nothing is added after. */
  stop(): void;
}

export function createKindTallyLine<K extends string>(
  windowMs: number,
  kinds: readonly K[],
  report: (counts: Readonly<Record<K, number>>, last: K) => void,
  clock?: () => number,
): KindTallyLine<K> {
  const zero = (): Record<K, number> => Object.fromEntries(kinds.map((k) => [k, 0])) as Record<K, number>;
  let pending = zero();
  let stopped = false;
  // The line's sum is the sum of `pending`: whenever it writes, every kind's count goes with it.
  const line = createTallyLine<K>(
    windowMs,
    (_, last) => {
      const counts = pending;
      pending = zero();
      report(counts, last);
    },
    clock,
  );
  return {
    add(kind) {
      if (stopped) return;
      pending[kind]++;
      line.add(1, kind);
    },
    stop() {
      stopped = true;
      line.stop();
    },
  };
}
