/**
 * Files the host names (a token file, a certificate, a recording, the spectator
 * file): read whole as text. One that cannot be read is the host's to fix, so it
 * is an E_CONFIG error naming the file and the system's reason, never a stack trace.
 */
import { readFileSync } from "node:fs";
import { RelayError } from "./errors.ts";

/** The system's code for a failed file operation (ENOENT, EACCES), or `fallback`. */
export function errnoCode(error: unknown, fallback = "unreadable"): string {
  return (error as NodeJS.ErrnoException).code ?? fallback;
}

/** `path` as UTF-8 text; `what` names it in the error: `cannot read ${what} '${path}' (ENOENT)`. */
export function readHostFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new RelayError("E_CONFIG", `cannot read ${what} '${path}' (${errnoCode(error)})`, { cause: error });
  }
}
