/**
 * `sova-relay watch enable|disable|list`: which sessions spectators may watch.
 * A command against the spectator file (in --state-dir, or --spectator-file),
 * never a network API: `enable` makes a new key, prints it once and stores only
 * its digest; the relay loads the file at start and on SIGHUP.
 */
import { defineCommand } from "citty";
import { option } from "../host/config.ts";
import { argsDef, type OptionTable, resolveOptions } from "../lib/options.ts";
import { RelayError } from "../lib/errors.ts";
import { readSpectatorFile, spectatorPath, writeSpectatorFile } from "../storage/spectator-file.ts";
import { keyDigest, makeKey } from "../watch/index.ts";

interface WatchCliOptions {
  stateDir: string;
  spectatorFile: string;
  watchSession: string;
}

function session(raw: string, flag: string): string {
  const s = raw.trim();
  if (!/^([0-9a-f]{12}|open)$/.test(s))
    throw new RelayError(
      "E_CONFIG",
      `invalid value for --${flag}: '${raw}' (expected a 12-hex-digit session hash as /status shows it, or 'open')`,
    );
  return s;
}

export const WATCH_OPTIONS: OptionTable<WatchCliOptions> = [
  option("stateDir"),
  option("spectatorFile"),
  {
    key: "watchSession",
    flag: "session",
    description:
      "The session: its 12-hex-digit hash as /status shows it, or 'open' (the session of a relay without tokens)",
    default: "",
    type: "custom",
    accepts: "a 12-hex-digit session hash, or open",
    parse: session,
    valueHint: "hash",
  },
];

function fileOf(o: WatchCliOptions): string {
  if (o.spectatorFile) return o.spectatorFile;
  if (o.stateDir) return spectatorPath(o.stateDir);
  throw new RelayError("E_CONFIG", "watch needs --state-dir DIR (the relay's) or --spectator-file FILE");
}

function needSession(o: WatchCliOptions): string {
  if (!o.watchSession)
    throw new RelayError("E_CONFIG", "this needs --session HASH (as /status shows it) or --session open");
  return o.watchSession;
}

const enable = defineCommand({
  meta: {
    name: "enable",
    description: "Let spectators watch a session: prints a new key (once); an older key stops working",
  },
  args: argsDef(WATCH_OPTIONS),
  run({ args, rawArgs }) {
    const o = resolveOptions(WATCH_OPTIONS, args, rawArgs);
    const path = fileOf(o);
    const target = needSession(o);
    const key = makeKey();
    const kept = readSpectatorFile(path, true).filter((e) => e.session !== target);
    writeSpectatorFile(path, [...kept, { session: target, digest: keyDigest(key) }]);
    console.log(`Spectators of session ${target} can watch at /watch/${key} on the relay's HTTP address.`);
    console.log(
      "The key is shown this once (the relay keeps only its digest): share the page's address with your audience.",
    );
    console.log("Send the relay SIGHUP (or restart it) to load it.");
  },
});

const disable = defineCommand({
  meta: { name: "disable", description: "Stop spectators watching a session (its key stops working)" },
  args: argsDef(WATCH_OPTIONS),
  run({ args, rawArgs }) {
    const o = resolveOptions(WATCH_OPTIONS, args, rawArgs);
    const path = fileOf(o);
    const target = needSession(o);
    const entries = readSpectatorFile(path, true);
    const kept = entries.filter((e) => e.session !== target);
    if (kept.length === entries.length) {
      console.log(`Session ${target} was not being watched.`);
      return;
    }
    writeSpectatorFile(path, kept);
    console.log(`Session ${target} can no longer be watched once the relay reloads (SIGHUP or restart).`);
  },
});

const list = defineCommand({
  meta: { name: "list", description: "The sessions spectators can watch (their keys are not kept, so not shown)" },
  args: argsDef(WATCH_OPTIONS),
  run({ args, rawArgs }) {
    const o = resolveOptions(WATCH_OPTIONS, args, rawArgs);
    const entries = readSpectatorFile(fileOf(o), true);
    if (entries.length === 0) console.log("No session can be watched.");
    for (const e of entries) console.log(e.session);
  },
});

export const watchCommand = defineCommand({
  meta: { name: "watch", description: "Spectator pages: enable, disable or list watched sessions" },
  subCommands: { enable, disable, list },
});
