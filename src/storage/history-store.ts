/**
 * Session history on disk (--state-dir): an embedded SQLite database in WAL
 * mode, so a restart (or a container restart with a volume) keeps every
 * session's history. Writes are queued and committed in one transaction every
 * 50 ms, off the relay's hot path. A database that cannot be read, or written,
 * stops the relay at start-up with the reason (storage-errors.ts) rather than
 * silently losing history.
 *
 * At run time a failing write (a full disk, a file made read-only) never stops
 * the relay: it used to throw out of the commit timer and exit, dropping every
 * session. Now the store turns degraded (logged once, failures counted, shown by
 * /healthz, /status and /metrics), history goes on in memory within its bounds,
 * and the store retries by writing memory's history whole, backing off to
 * RETRY_MAX_MS; once a retry succeeds the disk matches memory again.
 */
import { Database } from "bun:sqlite";
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import type { History, HistoryEntry, HistorySink } from "../core/history.ts";
import { databaseError, directoryError, shortReason } from "./storage-errors.ts";

export const HISTORY_FILE = "history.sqlite";
const FLUSH_MS = 50;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;

type Op = { kind: "insert"; session: string; entry: HistoryEntry } | { kind: "evict"; session: string; upTo: number };

/** Whether history reaches the disk (what /healthz, /status and /metrics show). */
export interface StorageHealth {
  degraded: boolean;
  /** Why, while degraded: a short reason without the path. */
  reason: string | null;
  /** Commits and retries that failed since start. */
  writeFailures: number;
}

export interface HistoryStore extends HistorySink {
  readonly path: string;
  readonly health: Readonly<StorageHealth>;
  /**
   * This database's numbering (History.epoch): made once with the database, made anew when its history is cleared,
   * so a resumption cursor from before never names a different frame.
   */
  readonly epoch: string;
  /** Reads every stored entry into `history` (which the store then writes back whole after a failure); returns how many. */
  load(history: History): number;
  /** Commits what is queued now (shutdown). */
  flush(): void;
  close(): void;
}

/**
 * The database file made readable by its owner only, as the directory is (0700): it holds every session's
 * chat and scripts. Made here before SQLite opens it, which would make it 0644, and its -wal and -shm take its
 * mode. A file an older relay made 0644 is tightened, as session-key is; one of another owner is left as it is.
 */
function privateFile(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
    // Root running `history clear` on the relay's directory leaves a file the relay can open, as `watch enable` does.
    const dir = statSync(dirname(path));
    if (process.getuid?.() === 0 && dir.uid !== 0) chownSync(path, dir.uid, dir.gid);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      if ((statSync(`${path}${suffix}`).mode & 0o077) !== 0) chmodSync(`${path}${suffix}`, 0o600);
    } catch {}
  }
}

export function openDatabase(dir: string, reset = false): { db: Database; path: string } {
  const path = join(dir, HISTORY_FILE);
  try {
    // 0700, as session-key.ts and the spectator file make it: whichever runs first makes the directory.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw directoryError(dir, "create", error);
  }
  try {
    if (reset) for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
  } catch (error) {
    throw directoryError(dir, "discard the history (--state-reset) in", error);
  }
  let db: Database | null = null;
  try {
    privateFile(path);
    db = new Database(path, { create: true, strict: true });
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA synchronous = NORMAL");
    const check = db.query("PRAGMA quick_check").get() as { quick_check: string } | null;
    if (check?.quick_check !== "ok")
      throw Object.assign(new Error(check?.quick_check ?? "integrity check failed"), { code: "SQLITE_CORRUPT" });
    db.run(
      "CREATE TABLE IF NOT EXISTS history (session TEXT NOT NULL, seq INTEGER NOT NULL," +
        " at INTEGER NOT NULL, frame BLOB NOT NULL," +
        " PRIMARY KEY (session, seq)) WITHOUT ROWID",
    );
    db.run("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID");
    // A file the relay can read but not write (restored as root) opened fine and
    // failed at the first edit: write once now, so it is found at start-up.
    const { user_version } = db.query("PRAGMA user_version").get() as { user_version: number };
    db.run(`PRAGMA user_version = ${Number(user_version)}`);
  } catch (error) {
    db?.close();
    throw databaseError(path, dir, error);
  }
  return { db, path };
}

/** The database's epoch, made on first use. */
function epochOf(db: Database): string {
  db.run("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", [crypto.randomUUID().slice(0, 8)]);
  return (db.query("SELECT value FROM meta WHERE key = 'epoch'").get() as { value: string }).value;
}

export function openHistoryStore(dir: string, options: { reset?: boolean; log: Logger }): HistoryStore {
  const { db, path } = openDatabase(dir, options.reset);
  const { log } = options;
  let epoch: string;
  try {
    epoch = epochOf(db);
  } catch (error) {
    throw databaseError(path, dir, error);
  }
  const insert = db.prepare("INSERT OR REPLACE INTO history (session, seq, at, frame) VALUES (?, ?, ?, ?)");
  const evict = db.prepare("DELETE FROM history WHERE session = ? AND seq <= ?");
  const health: StorageHealth = { degraded: false, reason: null, writeFailures: 0 };
  let queue: Op[] = [];
  let timer: Timer | null = null;
  let retryTimer: Timer | null = null;
  let retryMs = RETRY_FIRST_MS;
  let source: History | null = null;

  const commit = db.transaction((ops: Op[]) => {
    for (const op of ops) {
      if (op.kind === "insert") insert.run(op.session, op.entry.seq, op.entry.at, op.entry.frame);
      else evict.run(op.session, op.upTo);
    }
  });

  /** The disk made equal to memory: what was queued while degraded is in memory, not in the queue. */
  const rewrite = db.transaction((history: History) => {
    db.run("DELETE FROM history");
    history.each((session, entry) => insert.run(session, entry.seq, entry.at, entry.frame));
  });

  function failed(error: unknown): void {
    health.writeFailures++;
    if (!health.degraded) {
      health.degraded = true;
      health.reason = shortReason(error);
      log.error(
        "history_write_failed",
        `History cannot be saved to ${path} (${(error as Error).message}): relaying goes on, history is kept` +
          ` in memory within its bounds and written again once the disk takes it` +
          ` (logged once; failures counted in sova_relay_storage_write_failures_total)`,
        { reason: health.reason },
      );
    }
    retryTimer ??= setTimeout(retry, retryMs);
    retryTimer.unref?.();
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  }

  function retry(): void {
    retryTimer = null;
    if (!health.degraded || source === null) return;
    try {
      rewrite(source);
    } catch (error) {
      return failed(error);
    }
    health.degraded = false;
    health.reason = null;
    retryMs = RETRY_FIRST_MS;
    log.info("history_write_recovered", `History is saved to ${path} again (${health.writeFailures} failed writes)`, {
      failures: health.writeFailures,
    });
  }

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    const ops = queue;
    queue = [];
    // Degraded: memory has it all, and the retry writes it whole.
    if (ops.length === 0 || health.degraded) return;
    try {
      commit(ops);
    } catch (error) {
      failed(error);
    }
  }

  function schedule(op: Op): void {
    if (health.degraded) return;
    queue.push(op);
    timer ??= setTimeout(flush, FLUSH_MS);
  }

  return {
    path,
    health,
    epoch,
    appended(session, entry) {
      schedule({ kind: "insert", session, entry });
    },
    evicted(session, upTo) {
      schedule({ kind: "evict", session, upTo });
    },
    load(history) {
      source = history;
      let n = 0;
      try {
        for (const row of db
          .query("SELECT session, seq, at, frame FROM history ORDER BY session, seq")
          .iterate() as IterableIterator<{ session: string; seq: number; at: number; frame: Uint8Array }>) {
          history.restore(row.session, { seq: row.seq, at: row.at, frame: new Uint8Array(row.frame) });
          n++;
        }
      } catch (error) {
        throw databaseError(path, dir, error);
      }
      return n;
    },
    flush,
    close() {
      flush();
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      // A last try: the disk may take it now.
      if (health.degraded) retry();
      try {
        db.close();
      } catch {}
    },
  };
}

/**
 * The relay's database, which must be there already (history export and clear): opening it the relay's way
 * would make the directory and an empty database, and a mistyped --state-dir left both behind, `clear`
 * saying it removed 0 updates as if the history were gone.
 */
export function openExistingDatabase(dir: string): ReturnType<typeof openDatabase> {
  const kind = (path: string) => {
    try {
      return statSync(path).isDirectory() ? "directory" : "file";
    } catch {
      return "none";
    }
  };
  if (kind(dir) !== "directory")
    throw new RelayError(
      "E_CONFIG",
      `--state-dir '${dir}' ${kind(dir) === "none" ? "does not exist" : "is not a directory"}`,
    );
  if (kind(join(dir, HISTORY_FILE)) !== "file")
    throw new RelayError(
      "E_CONFIG",
      `no session history in ${dir} (no ${HISTORY_FILE}: the relay keeps one with --state-dir and --history)`,
    );
  return openDatabase(dir);
}

/** `sova-relay history clear`: removes stored history, all or one session's. */
export function clearStoredHistory(dir: string, session?: string): number {
  const { db, path } = openExistingDatabase(dir);
  try {
    const result =
      session === undefined
        ? db.run("DELETE FROM history")
        : db.run("DELETE FROM history WHERE session = ?", [session]);
    // Numbers start again from 1: a new epoch, so tunnels' cursors from before cannot be taken for the new frames.
    db.run("DELETE FROM meta WHERE key = 'epoch'");
    return result.changes;
  } catch (error) {
    throw databaseError(path, dir, error);
  } finally {
    db.close();
  }
}
