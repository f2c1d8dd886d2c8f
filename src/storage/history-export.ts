/**
 * Reading stored history back for `sova-relay history export`: a session's
 * frames in the order they were relayed, each with its arrival time. A reader
 * of the WAL database, so it works while the relay runs (what the relay has
 * not committed yet, at most its last 50 ms, is not in it).
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import { HISTORY_FILE, openDatabase } from "./history-store.ts";

export interface StoredFrame {
  seq: number;
  at: number;
  frame: Uint8Array;
}

/**
 * The relay's database, which must be there already: export only reads, and opening it the relay's way would
 * make the directory and an empty database (a mistyped --state-dir left both behind).
 */
function openStored(dir: string): ReturnType<typeof openDatabase> {
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

/** Sessions with stored history, by their hash, with how many updates each. */
export function storedSessions(dir: string): Map<string, number> {
  const { db } = openStored(dir);
  try {
    const rows = db.query("SELECT session, COUNT(*) AS n FROM history GROUP BY session").all() as Array<{
      session: string;
      n: number;
    }>;
    return new Map(rows.map((r) => [r.session, r.n]));
  } finally {
    db.close();
  }
}

/** Every stored frame of `session`, oldest first. */
export function readStoredHistory(dir: string, session: string): StoredFrame[] {
  const { db, path } = openStored(dir);
  try {
    const rows = db.query("SELECT seq, at, frame FROM history WHERE session = ? ORDER BY seq").all(session) as Array<{
      seq: number;
      at: number;
      frame: Uint8Array;
    }>;
    return rows.map((r) => ({ seq: r.seq, at: r.at, frame: new Uint8Array(r.frame) }));
  } catch (error) {
    throw new RelayError("E_CONFIG", `cannot read the history database '${path}' (${(error as Error).message})`, {
      cause: error,
    });
  } finally {
    db.close();
  }
}
