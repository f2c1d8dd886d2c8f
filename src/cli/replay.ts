import { defineCommand } from "citty";
import { constants as osConstants } from "node:os";
import { parseRecording, type Recording } from "../client/recording.ts";
import { play, registerPlayers, stateUpdates, timeline } from "../client/replay.ts";
import { option } from "../host/config.ts";
import { argsDef, type OptionTable, resolveOptions } from "../lib/options.ts";
import { SOVA_PROTOCOL_VERSION } from "../protocol/version.ts";
import { serveWatch } from "../http/watch.ts";
import { RelayError } from "../lib/errors.ts";
import { createLogger } from "../lib/log.ts";
import { createWatcher, keyDigest, makeKey, spectatorKeys } from "../watch/index.ts";
import { readHostFile } from "../lib/files.ts";
import { status } from "./terminal.ts";

interface ReplayOptions {
  replayHost: string;
  port: number | null;
  replayToken: string;
  tls: boolean;
  ca: string;
  speed: number;
  sovaVersion: string;
  watch: boolean;
  httpHost: string;
  httpPort: number | null;
}

function speed(raw: string, flag: string): number {
  const n = Number(raw.trim());
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0) || n > 1000)
    throw new RelayError("E_CONFIG", `invalid value for --${flag}: '${raw}' (expected a factor above 0, at most 1000)`);
  return n;
}

export const REPLAY_OPTIONS: OptionTable<ReplayOptions> = [
  { key: "replayHost", flag: "host", description: "The relay's address", default: "127.0.0.1", type: "text" },
  { ...option("port"), description: "The relay's port (its --port, or --tls-port with --tls)" },
  {
    key: "replayToken",
    flag: "token",
    description: "The session token of the session to play into (none: the open session)",
    default: "",
    type: "secret",
    valueHint: "token",
  },
  { key: "tls", description: "Connect with TLS (the relay's --tls-port)", default: false, type: "switch" },
  {
    key: "ca",
    description: "PEM file of the CA to trust (a private CA)",
    default: "",
    type: "text",
    valueHint: "file",
  },
  {
    key: "speed",
    description: "Play this many times faster (0.5: half speed)",
    default: 1,
    type: "custom",
    accepts: "a factor above 0, at most 1000",
    parse: speed,
  },
  {
    key: "sovaVersion",
    description: "The Sova version the replay's instances report (the relay's --expected-version)",
    default: SOVA_PROTOCOL_VERSION,
    type: "text",
    valueHint: "version",
  },
  {
    key: "watch",
    description: "Play into a local spectator page instead of a relay (no Sova instance needed)",
    default: false,
    type: "switch",
  },
  { ...option("httpHost"), description: "With --watch: the page's address" },
  { ...option("httpPort"), default: 0, description: "With --watch: the page's port (default: any free port)" },
] as OptionTable<ReplayOptions>;

function readRecording(file: string): Recording {
  return parseRecording(readHostFile(file, "the recording"), file);
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * The status of a replay a signal cut short: 128 + the signal's number, as a shell reports a command it
 * interrupted (130 for Ctrl-C, 143 for SIGTERM). A replay that played every update exits 0.
 */
const signalStatus = (signal: NodeJS.Signals): number => 128 + osConstants.signals[signal];

/**
 * Resolves with the first SIGINT or SIGTERM. Handled for good (not `once`): a second one exits at once, with
 * the first one's status, instead of leaving it to the default action halfway through the stop.
 */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let first: NodeJS.Signals | null = null;
    const on = (signal: NodeJS.Signals) => {
      if (first) process.exit(signalStatus(first));
      first = signal;
      resolve(signal);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

/**
 * A stop on the first signal: `signal` aborts the play, `by` resolves with the signal. Made before the line
 * that says Ctrl-C stops, so that a signal sent on reading it is handled rather than killing the process.
 */
function stopOnSignal(): { signal: AbortSignal; by: Promise<NodeJS.Signals> } {
  const stopped = new AbortController();
  const by = untilSignal();
  void by.then(() => stopped.abort());
  return { signal: stopped.signal, by };
}

async function intoPage(rec: Recording, o: ReplayOptions): Promise<never> {
  const session = rec.header.session;
  const watcher = createWatcher();
  watcher.watch([session]);
  const key = makeKey();
  const keys = spectatorKeys([{ session, digest: keyDigest(key) }]);
  // The page shows the players by the names in the recording: nobody is registered anywhere.
  const names = [...new Set(rec.frames.map((f) => f.source))];
  const host = o.httpHost || "127.0.0.1";
  const log = createLogger({ level: "warn" });
  const server = serveWatch({ host, port: o.httpPort ?? 0 }, { watcher, keys: () => keys }, () => names, log);
  console.log(`http://${host}:${server.port}/watch/${key}`);
  const stop = stopOnSignal();
  status(
    `Playing ${rec.frames.length} updates of session ${session} into the page above` +
      ` (${seconds(timeline(rec.frames, o.speed).durationMs)} at speed ${o.speed}); Ctrl-C stops`,
  );
  const played = await play(rec.frames, o.speed, (f) => watcher.push(session, f.frame, Date.now()), stop.signal);
  if (played === rec.frames.length) status("Played to the end; the page stays until Ctrl-C");
  const by = await stop.by;
  server.stop();
  // Closing the page after the end is how a finished replay ends: 0. Stopped halfway, the signal's status.
  if (played < rec.frames.length) status(`Stopped by ${by} after ${played} of ${rec.frames.length} updates`);
  process.exit(played < rec.frames.length ? signalStatus(by) : 0);
}

async function intoRelay(rec: Recording, o: ReplayOptions): Promise<never> {
  if (!o.port) throw new RelayError("E_CONFIG", "replay needs the relay's --port (1-65535)");
  const tls = o.tls ? { ca: o.ca ? readHostFile(o.ca, "--ca") : undefined } : undefined;
  const target = { host: o.replayHost, port: o.port, tls, token: o.replayToken || null, version: o.sovaVersion };
  const { players, close } = await registerPlayers(rec.frames, target);
  const updates = stateUpdates(rec.frames, new Map([...players].map(([name, c]) => [name, c.id!])));
  const stop = stopOnSignal();
  status(
    `Replaying ${rec.frames.length} updates by ${players.size} players into ${o.replayHost}:${o.port}` +
      ` (${seconds(timeline(rec.frames, o.speed).durationMs)} at speed ${o.speed}); Ctrl-C stops`,
  );
  const start = performance.now();
  const played = await play(rec.frames, o.speed, (f, i) => players.get(f.source)!.sendRaw(updates[i]!), stop.signal);
  // What is still queued goes out before the connections close.
  while ([...players.values()].some((c) => c.pendingBytes > 0 && !c.isClosed)) await Bun.sleep(5);
  close();
  console.log(`replayed ${played} of ${rec.frames.length} updates in ${seconds(performance.now() - start)}`);
  process.exit(played < rec.frames.length ? signalStatus(await stop.by) : 0);
}

export const replayCommand = defineCommand({
  meta: {
    name: "replay",
    description:
      "sova-relay replay FILE [options]: play a recording (sova-relay history export) into a relay's session," +
      " or with --watch into a local spectator page",
  },
  args: argsDef(REPLAY_OPTIONS),
  async run({ args, rawArgs }) {
    const file = args._[0];
    if (!file) throw new RelayError("E_CONFIG", "replay needs a recording: sova-relay replay FILE");
    const o = resolveOptions(REPLAY_OPTIONS, { ...args, _: args._.slice(1) } as typeof args, rawArgs);
    const rec = readRecording(file);
    if (rec.frames.length === 0) throw new RelayError("E_CONFIG", `${file} holds no updates`);
    await (o.watch ? intoPage(rec, o) : intoRelay(rec, o));
  },
});
