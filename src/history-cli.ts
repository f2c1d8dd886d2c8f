/**
 * `sova-relay history clear --state-dir DIR [--session HASH]`: clearing history
 * is a command against the state directory, never a network API. Run it while
 * the relay is stopped (or restart the relay after), since a running relay
 * keeps its own copy in memory.
 */
import { defineCommand } from "citty";
import { RelayError } from "./errors.ts";
import { clearStoredHistory } from "./store.ts";

const clear = defineCommand({
  meta: { name: "clear", description: "Delete stored session history (all sessions, or one by its hash)" },
  args: {
    "state-dir": { type: "string", description: "The relay's --state-dir", required: false },
    session: { type: "string", description: "Only this session (its 12-hex-digit hash, as /status shows it)" },
  },
  run({ args }) {
    const dir = (args["state-dir"] as string | undefined) ?? process.env.SOVA_RELAY_STATE_DIR;
    if (!dir) throw new RelayError("E_CONFIG", "history clear needs --state-dir DIR");
    const session = args.session as string | undefined;
    if (session !== undefined && !/^([0-9a-f]{12}|open)$/.test(session)) {
      throw new RelayError("E_CONFIG", `invalid value for --session: '${session}' (expected a 12-hex-digit session hash, or 'open')`);
    }
    const removed = clearStoredHistory(dir, session);
    console.log(`removed ${removed} stored updates${session ? ` of session ${session}` : ""} from ${dir}`);
  },
});

export const historyCommand = defineCommand({
  meta: { name: "history", description: "Manage stored session history" },
  subCommands: { clear },
});
