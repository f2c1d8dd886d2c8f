/**
 * Reading stored history back for `sova-relay history export`: a session's
 * frames in the order they were relayed, each with its arrival time. A reader
 * of the WAL database, so it works while the relay runs (what the relay has
 * not committed yet, at most its last 50 ms, is not in it).
 */
import { RelayError } from "../lib/errors.ts";
import { openExistingDatabase } from "./history-store.ts";

export interface StoredFrame {
  seq: number;
  at: number;
  frame: Uint8Array;
}

/** Sessions with stored history, by their hash, with how many updates each. */
export function storedSessions(dir: string): Map<string, number> {
  const { db } = openExistingDatabase(dir);
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
  const { db, path } = openExistingDatabase(dir);
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
