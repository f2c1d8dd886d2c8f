/**
 * `sova-relay history clear --state-dir DIR [--session HASH]`: clearing history
 * is a command against the state directory, never a network API. Run it while
 * the relay is stopped (or restart the relay after), since a running relay
 * keeps its own copy in memory.
 *
 * `sova-relay history export` writes a session's history as a recording (see
 * src/client/recording.ts), from --state-dir or from a cluster's NATS.
 */
import { closeSync, fchmodSync, fstatSync, openSync, writeFileSync } from "node:fs";
import { defineCommand } from "citty";
import { frameLines, headerLine } from "../client/recording.ts";
import { option } from "../host/config.ts";
import { type OptionTable, argsDef, resolveOptions } from "../lib/options.ts";
import { RelayError } from "../lib/errors.ts";
import { clearStoredHistory } from "../storage/history-store.ts";
import { readStoredHistory, storedSessions } from "../storage/history-export.ts";
import { status } from "./terminal.ts";

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
    description: "Only this session: its 12-hex-digit hash as /status shows it, or open (the session without a token)",
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

interface ExportOptions {
  stateDir: string;
  historySession: string;
  out: string;
  cluster: string[];
  clusterCreds: string;
  clusterCa: string;
  clusterUser: string;
  clusterPassword: string;
  clusterToken: string;
}

export const EXPORT_OPTIONS: OptionTable<ExportOptions> = [
  option("stateDir"),
  {
    ...CLEAR_OPTIONS[1]!,
    description: "The session (its 12-hex-digit hash, or 'open'); needed when there are several",
  },
  {
    key: "out",
    description: "Write the recording to this file (default: standard output)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  { ...option("cluster"), description: "Read the cluster's history from its NATS instead (nats://HOST:PORT)" },
  option("clusterCreds"),
  option("clusterCa"),
  option("clusterUser"),
  option("clusterPassword"),
  option("clusterToken"),
] as OptionTable<ExportOptions>;

/** The session to export: the one asked for, or the only one there is. */
function pick(sessions: Map<string, number>, asked: string, where: string): string {
  if (asked) {
    if (!sessions.has(asked)) throw new RelayError("E_CONFIG", `no history of session ${asked} in ${where}`);
    return asked;
  }
  if (sessions.size === 1) return [...sessions.keys()][0]!;
  if (sessions.size === 0) throw new RelayError("E_CONFIG", `no session history in ${where}`);
  throw new RelayError(
    "E_CONFIG",
    `${where} holds the history of ${sessions.size} sessions (${[...sessions.keys()].join(", ")}): choose one with --session`,
  );
}

async function frames(
  o: ExportOptions,
): Promise<{ session: string; source: string; rows: Array<{ at: number; frame: Uint8Array }> }> {
  if (o.cluster.length > 0) {
    // Loaded only here: the relay and the other commands never load the NATS client.
    const { clusterSessions, readClusterHistory } = await import("../cluster/history-export.ts");
    const reach = {
      servers: o.cluster,
      creds: o.clusterCreds || undefined,
      ca: o.clusterCa || undefined,
      user: o.clusterUser || undefined,
      pass: o.clusterPassword || undefined,
      token: o.clusterToken || undefined,
    };
    const session = pick(await clusterSessions(reach), o.historySession, "the cluster");
    return { session, source: "cluster", rows: await readClusterHistory(reach, session) };
  }
  if (!o.stateDir) throw new RelayError("E_CONFIG", "history export needs --state-dir DIR (or --cluster URL)");
  const session = pick(storedSessions(o.stateDir), o.historySession, o.stateDir);
  return { session, source: "state-dir", rows: readStoredHistory(o.stateDir, session) };
}

/**
 * A recording holds the session's chat and scripts: --out is written readable by its owner only, a file that
 * was there made so too. Not a terminal or a pipe named as --out (/dev/stdout): only a regular file's mode changes.
 */
function writePrivate(out: string, text: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(out, "w", 0o600);
    if (fstatSync(fd).isFile()) fchmodSync(fd, 0o600);
    writeFileSync(fd, text);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unwritable";
    throw new RelayError("E_CONFIG", `cannot write --out '${out}' (${code})`, { cause: error });
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

export const exportCommand = defineCommand({
  meta: {
    name: "export",
    description:
      "Write a session's history as JSON Lines: a header, then each relayed frame exactly, with its arrival time",
  },
  args: argsDef(EXPORT_OPTIONS),
  async run({ args, rawArgs }) {
    const o = resolveOptions(EXPORT_OPTIONS, args, rawArgs);
    const { session, source, rows } = await frames(o);
    const text =
      headerLine({ session, frames: rows.length, exported_at: new Date().toISOString(), source }) + frameLines(rows);
    if (!o.out) {
      process.stdout.write(text);
      return;
    }
    writePrivate(o.out, text);
    status(`wrote ${rows.length} updates of session ${session} to ${o.out}`);
  },
});

export const historyCommand = defineCommand({
  meta: { name: "history", description: "Manage stored session history" },
  subCommands: { clear, export: exportCommand },
});
