/**
 * docs/reference/options.md: every command's options, from the option tables the
 * commands parse with (src/host/config.ts and the sub-commands' own), through
 * the engine's describeOption (src/lib/options.ts): the flag, the environment
 * names (legacy ones too), the default, what is accepted, whether it repeats,
 * and the description. `--help` is made from the same OptionDoc, so the two say
 * the same thing.
 */
import { CLEAR_OPTIONS, EXPORT_OPTIONS } from "../../src/cli/history.ts";
import { HEALTH_OPTIONS } from "../../src/cli/health.ts";
import { REPLAY_OPTIONS } from "../../src/cli/replay.ts";
import { TUNNEL_OPTIONS } from "../../src/cli/tunnel.ts";
import { WATCH_OPTIONS } from "../../src/cli/watch.ts";
import { OPTIONS } from "../../src/host/config.ts";
import { type AnyRow, describeOption, type OptionTable, rowsOf } from "../../src/lib/options.ts";
import { code, generatedNote, page, table } from "./markdown.ts";

function valueHint(row: AnyRow): string {
  if (row.type === "switch") return "";
  if (row.valueHint) return ` ${row.valueHint.toUpperCase()}`;
  if (row.type === "seconds") return " SECONDS";
  if (row.type === "port") return " PORT";
  return row.type === "integer" ? " N" : " VALUE";
}

function rows<C>(options: OptionTable<C>): string[][] {
  return rowsOf(options).map((row) => {
    const doc = describeOption(row);
    return [
      code(`${doc.flag}${valueHint(row)}`),
      doc.env.map(code).join(", "),
      doc.default === null ? "unset" : code(doc.default),
      doc.accepts,
      doc.repeatable ? "yes" : "",
      doc.description,
    ];
  });
}

const HEADERS = ["flag", "environment", "default", "accepted", "repeatable", "meaning"];

export function optionsPage(): string {
  return page(
    generatedNote("the option tables in src/host/config.ts and src/cli/, through src/lib/options.ts"),
    "# Options",
    "Every option is a flag and an environment variable; a flag beats the environment, which beats a legacy" +
      " name, which beats the default. A repeatable option takes its flag several times, or values separated by" +
      " commas (in the flag or the variable). SECONDS may have decimals. A value the option does not accept, a" +
      " flag it does not know, or a `SOVA_RELAY_*` name the command does not read stops the command with one" +
      " line and exit code 2. `--help` (or `-h`) after any command prints the same meanings;" +
      " `sova-relay --version` (or `-v`) prints the version, commit and build target.",
    "## `sova-relay` (the relay)",
    table(HEADERS, rows(OPTIONS)),
    "Tokens from `--token`, `SOVA_RELAY_TOKENS` and `--token-file` (one a line, `#` starts a comment) are used" +
      " together; each is its own session.",
    "## `sova-relay tunnel`",
    "The player's side ([players.md](../players.md#from-a-venue-or-with-tls-the-tunnel)).",
    table(HEADERS, rows(TUNNEL_OPTIONS)),
    "## `sova-relay health`",
    "Exits 0 when a relay answers at `--host`:`--port`, 1 with the reason when not. `--port` reads the relay's own" +
      " `SOVA_RELAY_PORT`, so in a container it is the port checked.",
    table(HEADERS, rows(HEALTH_OPTIONS)),
    "## `sova-relay history clear`",
    "Deletes stored history (run it with the relay stopped): every session's, or one session's.",
    table(HEADERS, rows(CLEAR_OPTIONS)),
    "## `sova-relay history export`",
    "Writes a session's history as a recording ([recordings.md](../recordings.md)).",
    table(HEADERS, rows(EXPORT_OPTIONS)),
    "## `sova-relay replay FILE`",
    "Plays a recording into a relay's session, or with `--watch` into a local spectator page" +
      " ([recordings.md](../recordings.md)).",
    table(HEADERS, rows(REPLAY_OPTIONS)),
    "## `sova-relay watch enable|disable|list`",
    "Which sessions spectators may watch ([watching.md](../watching.md)).",
    table(HEADERS, rows(WATCH_OPTIONS)),
  );
}
