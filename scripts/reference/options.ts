/**
 * docs/reference/options.md: every command's options, from the option tables
 * the commands parse with (src/host/config.ts and the sub-commands' own):
 * flag, environment names (legacy ones too), default, what is accepted, and
 * whether it repeats. What is accepted is what the row's own parser says when
 * it refuses a value, so it is the check itself, not a copy of it. The meaning
 * is the row's description, the same text `--help` shows.
 */
import { CLEAR_OPTIONS } from "../../src/cli/history.ts";
import { HEALTH_OPTIONS } from "../../src/cli/health.ts";
import { TUNNEL_OPTIONS } from "../../src/cli/tunnel.ts";
import { envName, flagName, OPTIONS, type OptionTable } from "../../src/host/config.ts";
import { code, generatedNote, page, table } from "./markdown.ts";

interface Row {
  key: string;
  flag?: string;
  description: string;
  default: unknown;
  legacyEnv?: string[];
  valueHint?: string;
  parse: (raw: string, flag: string) => unknown;
}

const rowsOf = <C>(t: OptionTable<C>) => t as unknown as readonly Row[];

function shownDefault(row: Row): string {
  const d = row.default;
  if (d === null || d === "" || d === false || (Array.isArray(d) && d.length === 0)) return "unset";
  return code(String(d));
}

/** What the row's parser accepts, in its own words: the `(expected ...)` of its refusal. */
function accepted(row: Row): string {
  if (typeof row.default === "boolean") return "a flag; in the environment 1, true, yes, 0, false or no";
  try {
    row.parse("\u0001 not a value \u0001", "x");
  } catch (error) {
    const m = /\(expected (.+)\)$/.exec((error as Error).message) ?? /: expected (.+)$/.exec((error as Error).message);
    if (m) return m[1]!;
  }
  return "any non-empty text";
}

function valueHint(row: Row): string {
  if (row.valueHint) return row.valueHint.toUpperCase();
  if (row.key.endsWith("Ms")) return "SECONDS";
  if (/port$/i.test(row.key)) return "PORT";
  return typeof row.default === "number" ? "N" : "VALUE";
}

function rows(table: readonly Row[]): string[][] {
  return table.map((row) => {
    const list = Array.isArray(row.default);
    const flag = `--${row.flag ?? flagName(row.key)}`;
    const hint = typeof row.default === "boolean" ? "" : ` ${valueHint(row)}`;
    const env = [envName(row.key), ...(row.legacyEnv ?? [])].map(code).join(", ");
    return [
      code(`${flag}${hint}`),
      `${env}${list ? " (comma-separated)" : ""}`,
      shownDefault(row),
      accepted(row),
      list ? "yes" : "",
      row.description,
    ];
  });
}

const HEADERS = ["flag", "environment", "default", "accepted", "repeatable", "meaning"];

export function optionsPage(): string {
  return page(
    generatedNote("the option tables in src/host/config.ts and src/cli/ (scripts/reference/options.ts)"),
    "# Options",
    "Every option is a flag and an environment variable; a flag beats the environment, which beats a legacy" +
      " name, which beats the default. SECONDS may have decimals. A value the option does not accept, or a flag it does not know, stops the command" +
      " with one line naming the option and exit code 2. `--help` (or `-h`) after any command prints these" +
      " meanings; `sova-relay --version` (or `-v`) prints the version, commit and build target.",
    "## `sova-relay` (the relay)",
    table(HEADERS, rows(rowsOf(OPTIONS))),
    "`--token` takes one token; repeat it for several sessions. `--token-file` holds one token a line" +
      " (`#` starts a comment). Tokens from all three places are used together.",
    "## `sova-relay tunnel`",
    "The player's side ([players.md](../players.md#from-a-venue-or-with-tls-the-tunnel)).",
    table(HEADERS, rows(rowsOf(TUNNEL_OPTIONS))),
    "## `sova-relay health`",
    "Exits 0 when a relay answers at `--host`:`--port`, 1 with the reason when not. `--port` is the relay's own" +
      " option, so `SOVA_RELAY_PORT` in a container is the port checked.",
    table(HEADERS, rows(rowsOf(HEALTH_OPTIONS))),
    "## `sova-relay history clear`",
    "Deletes stored history (run it with the relay stopped): every session's, or one session's.",
    table(HEADERS, rows(rowsOf(CLEAR_OPTIONS))),
  );
}
