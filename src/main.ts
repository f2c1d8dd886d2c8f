#!/usr/bin/env bun
/**
 * The command line: `sova-relay [options]` runs the relay, `sova-relay health`
 * checks one. Errors a user can fix print one line and exit 2; nothing prints
 * a stack trace.
 */
import { type CommandDef, defineCommand, parseArgs, runCommand } from "citty";
import { RELAY_ARGS, VERSION, configFromArgs } from "./host/config.ts";
import { serveCommand } from "./cli/serve.ts";
import { RelayError } from "./lib/errors.ts";
import { type CommandName, checkCommandEnvironment } from "./cli/environment.ts";
import { healthCommand } from "./cli/health.ts";
import { helpWidth, layoutRows, renderHelp } from "./cli/help.ts";
import { exportCommand, historyCommand } from "./cli/history.ts";
import { replayCommand } from "./cli/replay.ts";
import { forStream } from "./cli/terminal.ts";
import { tunnelCommand } from "./cli/tunnel.ts";
import { watchCommand } from "./cli/watch.ts";
import { versionLine } from "./lib/version.ts";

const subCommands: Record<string, CommandDef> = {
  serve: serveCommand,
  health: healthCommand,
  history: historyCommand,
  tunnel: tunnelCommand,
  watch: watchCommand,
  replay: replayCommand,
};

/**
 * `sova-relay [options]` runs the relay; `sova-relay <command> ...` one of the
 * others. The relay's args are declared here too, so that citty skips their
 * values while it looks for a command name.
 */
const mainCommand = defineCommand({
  meta: { name: "sova-relay", version: VERSION, description: "Relay for Sova live-coding instances" },
  args: RELAY_ARGS,
  subCommands,
  default: "serve",
  setup({ args, rawArgs }) {
    // Otherwise citty would take the value of a misspelt flag for a command: `--prot 9090` is "unknown command 9090".
    const first = args._[0];
    if (first !== undefined && !(first in subCommands)) configFromArgs(args, rawArgs);
  },
});

/** The command `--help` is about, and its parent: follow the command names given, as citty does. */
function commandFor(argv: string[]): [CommandDef, CommandDef | undefined] {
  let cmd: CommandDef = mainCommand;
  let parent: CommandDef | undefined;
  let rest = argv;
  for (;;) {
    const subs = cmd.subCommands as Record<string, CommandDef> | undefined;
    const name = parseArgs(rest, (cmd.args ?? {}) as typeof RELAY_ARGS)._[0];
    if (!subs || name === undefined || !(name in subs)) return [cmd, parent];
    parent = cmd;
    cmd = subs[name]!;
    rest = rest.slice(rest.indexOf(name) + 1);
  }
}

const HELP_AND_VERSION: Array<[string, string]> = [
  ["--help, -h", "this text; after a command, that command's (sova-relay tunnel --help)"],
  ["--version, -v", "the version, commit and build target"],
];

/** Whose environment names the command reads: the relay's for `sova-relay [options]` and `serve`. */
const ENV_OF: ReadonlyMap<CommandDef, CommandName> = new Map<CommandDef, CommandName>([
  [mainCommand, "relay"],
  [serveCommand, "relay"],
  [healthCommand, "health"],
  [historyCommand, "history clear"],
  [tunnelCommand, "tunnel"],
  [exportCommand, "history export"],
  [watchCommand, "watch"],
  [replayCommand, "replay"],
]);

async function main(argv: string[]): Promise<void> {
  const [command, parent] = commandFor(argv);
  if (argv.includes("--help") || argv.includes("-h")) {
    // citty lists neither flag: they are answered here, before any command runs.
    const own: Array<[string, string]> = command === mainCommand ? HELP_AND_VERSION : [["--help, -h", "this text"]];
    const width = helpWidth(process.stdout);
    const usage = await renderHelp(command, parent, width);
    console.log(forStream(`${usage}\n\nEVERY COMMAND\n\n${layoutRows(own, width)}\n`, process.stdout));
    return;
  }
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
    console.log(versionLine());
    return;
  }
  // Before anything runs: a mistyped setting must stop the command, never leave it running without it.
  checkCommandEnvironment(ENV_OF.get(command) ?? ENV_OF.get(parent!) ?? "relay");
  await runCommand(mainCommand, { rawArgs: argv });
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof RelayError) {
    console.error(forStream(`sova-relay: ${error.message}`, process.stderr));
    process.exit(error.code === "E_CONFIG" ? 2 : 1);
  }
  // citty's own usage errors (an unknown command): the user's to fix, like a bad option.
  const usage = error instanceof Error && error.name === "CLIError";
  console.error(forStream(`sova-relay: ${error instanceof Error ? error.message : String(error)}`, process.stderr));
  process.exit(usage ? 2 : 1);
});
