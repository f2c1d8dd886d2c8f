/**
 * What went wrong with the state directory or the history database, in words a
 * host can act on. A permission problem was once answered "or start with
 * --state-reset to discard it", which throws good history away, and
 * `--state-reset` on a directory the relay cannot write said "cannot listen"
 * (issue 27). Discarding history is suggested only when the file is damaged.
 */
import { accessSync, constants } from "node:fs";
import { RelayError } from "../lib/errors.ts";

export type StorageProblem = "damaged" | "unwritable" | "full" | "busy" | "other";

interface _Coded {
  code?: string;
  message?: string;
}

/** SQLite's result code (bun:sqlite puts it in `code`) or the errno name, as a kind of problem. */
export function storageProblem(error: unknown): StorageProblem {
  const code = String((error as _Coded | null)?.code ?? "");
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return "damaged";
  if (/^SQLITE_(READONLY|CANTOPEN|PERM|AUTH)/.test(code) || /^(EACCES|EPERM|EROFS)$/.test(code)) return "unwritable";
  if (code.startsWith("SQLITE_FULL") || code === "ENOSPC" || code === "EDQUOT") return "full";
  if (/^SQLITE_(BUSY|LOCKED)/.test(code)) return "busy";
  return "other";
}

function _uid(): string {
  return process.getuid ? `uid ${process.getuid()}` : "its user";
}

/** Why `dir` cannot be written, from the file system itself (a read-only mount, or permissions). */
function _whyUnwritable(dir: string): string {
  try {
    accessSync(dir, constants.W_OK);
    return "the database file itself is read-only to the relay";
  } catch (error) {
    const code = (error as _Coded).code;
    if (code === "EROFS") return "the file system is mounted read-only";
    if (code === "EACCES" || code === "EPERM") return "permission denied";
    return code ?? "not writable";
  }
}

/** A short reason for logs, /healthz and /status (no path: the page needs no login). */
export function shortReason(error: unknown): string {
  const problem = storageProblem(error);
  const code = (error as _Coded | null)?.code;
  const text = problem === "full" ? "disk full" : problem === "unwritable" ? "not writable" : problem;
  return `${text}${code ? `: ${code}` : ""}`;
}

/** The start-up error for the history database at `path` in `dir`: exit 2, naming the real cause. */
export function databaseError(path: string, dir: string, error: unknown): RelayError {
  const why = (error as _Coded | null)?.message ?? String(error);
  const code = (error as _Coded | null)?.code;
  const text = {
    damaged: `the history database '${path}' is damaged (${why}); fix or move it, or start with --state-reset to discard it`,
    unwritable:
      `cannot write the history database '${path}' (${_whyUnwritable(dir)}): the relay runs as ${_uid()};` +
      ` give it write access to '${dir}' and the files in it, or choose another --state-dir`,
    full: `no space left for the history database '${path}' (${why}): free space there or choose another --state-dir`,
    busy: `the history database '${path}' is locked by another process (${why}): is another relay using this --state-dir?`,
    other: `cannot use the history database '${path}' (${code ? `${code}: ` : ""}${why})`,
  }[storageProblem(error)];
  return new RelayError("E_CONFIG", text, { cause: error });
}

/** The start-up error for the state directory itself (create it, or discard its history for --state-reset). */
export function directoryError(dir: string, doing: string, error: unknown): RelayError {
  const code = (error as _Coded | null)?.code;
  const why =
    code === "EACCES" || code === "EPERM"
      ? `permission denied: the relay runs as ${_uid()}`
      : code === "EROFS"
        ? "the file system is mounted read-only"
        : code === "ENOSPC"
          ? "no space left"
          : (code ?? "unwritable");
  return new RelayError("E_CONFIG", `cannot ${doing} --state-dir '${dir}' (${why})`, { cause: error });
}
