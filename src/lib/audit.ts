/**
 * The --audit-log file: security events appended as JSON lines, reopened on
 * SIGHUP so logrotate can move it away. Writes are synchronous: these events
 * are rare next to relayed frames, and a line must not be lost on a crash.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { RelayError } from "./errors.ts";

export interface AuditFile {
  write(line: string): void;
  reopen(): void;
  close(): void;
}

function open(path: string): number {
  try {
    return openSync(path, "a", 0o640);
  } catch (error) {
    throw new RelayError(
      "E_CONFIG",
      `cannot open --audit-log '${path}' (${(error as NodeJS.ErrnoException).code ?? "unwritable"})`,
      { cause: error },
    );
  }
}

export function openAuditFile(path: string): AuditFile {
  let fd = open(path);
  return {
    write(line) {
      try {
        writeSync(fd, line);
      } catch {
        // A full disk must not take the relay down; the main log still has the event.
      }
    },
    reopen() {
      const next = open(path);
      closeSync(fd);
      fd = next;
    },
    close() {
      closeSync(fd);
    },
  };
}
