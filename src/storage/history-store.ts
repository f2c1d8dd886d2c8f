/**
 * Session history on disk (--state-dir): an embedded SQLite database in WAL
 * mode, so a restart (or a container restart with a volume) keeps every
 * session's history. Writes are queued and committed in one transaction every
 * 50 ms, off the relay's hot path. A database that cannot be read stops the
 * relay at start-up rather than silently losing history.
 */
import { Database } from "bun:sqlite";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import type { History, HistoryEntry, HistorySink } from "../core/history.ts";

const FILE = "history.sqlite";
const FLUSH_MS = 50;

type Op = { kind: "insert"; session: string; entry: HistoryEntry } | { kind: "evict"; session: string; upTo: number };

export interface HistoryStore extends HistorySink {
  readonly path: string;
  /**
   * This database's numbering (History.epoch): made once with the database, made anew when its history is cleared,
   * so a resumption cursor from before never names a different frame.
   */
  readonly epoch: string;
  /** Reads every stored entry into `history`; returns how many. */
  load(history: History): number;
  /** Commits what is queued now (shutdown). */
  flush(): void;
  close(): void;
}

function corrupt(path: string, error: unknown): RelayError {
  const why = (error as Error).message;
  return new RelayError(
    "E_CONFIG",
    `cannot use the history database '${path}' (${why}); fix or move it, or start with --state-reset to discard it`,
    { cause: error },
  );
}

export function openDatabase(dir: string, reset = false): { db: Database; path: string } {
  const path = join(dir, FILE);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new RelayError(
      "E_CONFIG",
      `cannot create --state-dir '${dir}' (${(error as NodeJS.ErrnoException).code ?? "unwritable"})`,
      { cause: error },
    );
  }
  if (reset) for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
  let db: Database;
  try {
    db = new Database(path, { create: true, strict: true });
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA synchronous = NORMAL");
    const check = db.query("PRAGMA quick_check").get() as { quick_check: string } | null;
    if (check?.quick_check !== "ok") throw new Error(check?.quick_check ?? "integrity check failed");
    db.run(
      "CREATE TABLE IF NOT EXISTS history (session TEXT NOT NULL, seq INTEGER NOT NULL," +
        " at INTEGER NOT NULL, frame BLOB NOT NULL," +
        " PRIMARY KEY (session, seq)) WITHOUT ROWID",
    );
    db.run("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID");
  } catch (error) {
    if (error instanceof RelayError) throw error;
    throw corrupt(path, error);
  }
  return { db, path };
}

/** The database's epoch, made on first use. */
function epochOf(db: Database): string {
  db.run("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", [crypto.randomUUID().slice(0, 8)]);
  return (db.query("SELECT value FROM meta WHERE key = 'epoch'").get() as { value: string }).value;
}

export function openHistoryStore(dir: string, options: { reset?: boolean } = {}): HistoryStore {
  const { db, path } = openDatabase(dir, options.reset);
  let epoch: string;
  try {
    epoch = epochOf(db);
  } catch (error) {
    throw corrupt(path, error);
  }
  const insert = db.prepare("INSERT OR REPLACE INTO history (session, seq, at, frame) VALUES (?, ?, ?, ?)");
  const evict = db.prepare("DELETE FROM history WHERE session = ? AND seq <= ?");
  let queue: Op[] = [];
  let timer: Timer | null = null;

  const commit = db.transaction((ops: Op[]) => {
    for (const op of ops) {
      if (op.kind === "insert") insert.run(op.session, op.entry.seq, op.entry.at, op.entry.frame);
      else evict.run(op.session, op.upTo);
    }
  });

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    if (queue.length === 0) return;
    const ops = queue;
    queue = [];
    commit(ops);
  }

  function schedule(op: Op): void {
    queue.push(op);
    timer ??= setTimeout(flush, FLUSH_MS);
  }

  return {
    path,
    epoch,
    appended(session, entry) {
      schedule({ kind: "insert", session, entry });
    },
    evicted(session, upTo) {
      schedule({ kind: "evict", session, upTo });
    },
    load(history) {
      let n = 0;
      try {
        for (const row of db
          .query("SELECT session, seq, at, frame FROM history ORDER BY session, seq")
          .iterate() as IterableIterator<{ session: string; seq: number; at: number; frame: Uint8Array }>) {
          history.restore(row.session, { seq: row.seq, at: row.at, frame: new Uint8Array(row.frame) });
          n++;
        }
      } catch (error) {
        throw corrupt(path, error);
      }
      return n;
    },
    flush,
    close() {
      flush();
      db.close();
    },
  };
}

/** `sova-relay history clear`: removes stored history, all or one session's. */
export function clearStoredHistory(dir: string, session?: string): number {
  const { db } = openDatabase(dir);
  try {
    const result =
      session === undefined
        ? db.run("DELETE FROM history")
        : db.run("DELETE FROM history WHERE session = ?", [session]);
    // Numbers start again from 1: a new epoch, so tunnels' cursors from before cannot be taken for the new frames.
    db.run("DELETE FROM meta WHERE key = 'epoch'");
    return result.changes;
  } finally {
    db.close();
  }
}
