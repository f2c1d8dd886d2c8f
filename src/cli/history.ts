/**
 * `sova-relay history clear --state-dir DIR [--session HASH]`: clearing history
 * is a command against the state directory, never a network API. Run it while
 * the relay is stopped (or restart the relay after), since a running relay
 * keeps its own copy in memory.
 */
import { defineCommand } from "citty";
import { option } from "../host/config.ts";
import { type OptionTable, argsDef, resolveOptions } from "../lib/options.ts";
import { RelayError } from "../lib/errors.ts";
import { clearStoredHistory } from "../storage/history-store.ts";

interface ClearOptions {
  stateDir: string;
  historySession: string;
}

function sessionHash(raw: string, flag: string): string {
  const session = raw.trim();
  if (!/^([0-9a-f]{12}|open)$/.test(session)) {
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag}: '${raw}' (expected a 12-hex-digit session hash, or 'open')`,
    );
  }
  return session;
}

export const CLEAR_OPTIONS: OptionTable<ClearOptions> = [
  option("stateDir"),
  {
    key: "historySession",
    flag: "session",
    description: "Only this session (its 12-hex-digit hash, as /status shows it)",
    default: "",
    type: "custom",
    accepts: "a 12-hex-digit session hash, or open",
    parse: sessionHash,
    valueHint: "hash",
  },
];

const clear = defineCommand({
  meta: { name: "clear", description: "Delete stored session history (all sessions, or one by its hash)" },
  args: argsDef(CLEAR_OPTIONS),
  run({ args, rawArgs }) {
    const { stateDir: dir, historySession: session } = resolveOptions(CLEAR_OPTIONS, args, rawArgs);
    if (!dir) throw new RelayError("E_CONFIG", "history clear needs --state-dir DIR");
    const removed = clearStoredHistory(dir, session || undefined);
    console.log(`removed ${removed} stored updates${session ? ` of session ${session}` : ""} from ${dir}`);
  },
});

export const historyCommand = defineCommand({
  meta: { name: "history", description: "Manage stored session history" },
  subCommands: { clear },
});
