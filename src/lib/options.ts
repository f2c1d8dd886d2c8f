/**
 * The option engine: a table of rows, one per option, gives citty's arg
 * definitions, the `--help` text, the environment names (`SOVA_RELAY_<NAME>`)
 * and the values, taken from flags, then the environment, then legacy names,
 * then defaults. What a row accepts is data on the row (type, min, max, unit,
 * choices, repeatable, legacy names), never hidden in a parser, so the
 * reference docs are generated from the same rows as `--help` (describeOption).
 *
 * Two conventions: a key ending in `Ms` is given in seconds (flag and
 * environment) and held in milliseconds, converted in `resolveOptions` only; a
 * repeatable row (its default a list) collects every use of its flag, each
 * value, like its environment variable, comma-separated.
 */
import type { ArgsDef, ParsedArgs } from "citty";
import { RelayError } from "./errors.ts";

export const ENV_PREFIX = "SOVA_RELAY_";

export type Parser<T> = (raw: string, flag: string) => T;
/** What one flag value parses to: a repeatable option parses its items one at a time. */
type Item<T> = T extends readonly (infer E)[] ? E : T;

/** Seconds options stop at a year: a typo of a few zeros is caught, and the timers stay in range. */
const MAX_SECONDS = 86_400 * 365;

/** What a row accepts, as data: the parser, the error text, `--help` and the docs all read it. */
export type Accepts<T> =
  /** A whole number in [min, max]; `unit` says of what (bytes, milliseconds). */
  | { type: "integer"; min: number; max: number; unit?: string }
  /** A number of seconds, fractions allowed, from `min` (held in milliseconds: the key ends in `Ms`). */
  | { type: "seconds"; min: number }
  /** A port; `any` lets the OS pick, and `0` means `zero`: no listener, or any free port. */
  | { type: "port"; zero: "off" | "any" }
  | { type: "choice"; choices: readonly string[] }
  /** Trimmed text; empty only where `empty` says it is allowed. */
  | { type: "text"; empty?: "allowed" }
  /** Like text, but the value is never echoed in an error. */
  | { type: "secret" }
  /** A flag without a value; `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` in the environment. */
  | { type: "switch" }
  /** Anything else: `accepts` says what in words, `parse` checks it (and never echoes a secret). */
  | { type: "custom"; accepts: string; parse: Parser<T> };

interface RowBase<C, K extends keyof C> {
  key: K;
  description: string;
  /** In the flag's units (seconds for `...Ms` keys). */
  default: C[K];
  /** The flag when it is not the key in kebab case (`tokens` is given as `--token`, once per token). */
  flag?: string;
  valueHint?: string;
  /** Names the seed relay read, still honoured after ours. */
  legacyEnv?: readonly string[];
  /** How the legacy names' values read, where they differ (RUST_LOG's `sova_relay=debug,tokio=warn`). */
  legacyParse?: Parser<Item<C[K]>>;
}

/** A list-valued option is repeatable, and says so on its row. */
type Repeat<T> = [T] extends [readonly unknown[]] ? { repeatable: true } : { repeatable?: false };

export type OptionSpec<C, K extends keyof C> = RowBase<C, K> & Accepts<Item<C[K]>> & Repeat<C[K]>;

/** Rows of any key of C, each typed by its own key. */
export type OptionTable<C> = ReadonlyArray<{ [K in keyof C]-?: OptionSpec<C, K> }[keyof C]>;

/** A row with its types forgotten, as the engine reads it. */
export type AnyRow = RowBase<Record<string, unknown>, string> &
  Accepts<unknown> & { repeatable?: boolean; legacyParse?: Parser<unknown> };

export const rowsOf = <C>(table: OptionTable<C>) => table as unknown as readonly AnyRow[];

function baseName(key: string): string {
  return key.endsWith("Ms") ? key.slice(0, -2) : key;
}

export function flagName(key: string): string {
  return baseName(key).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `${ENV_PREFIX}${flagName(key).replace(/-/g, "_").toUpperCase()}`;
}

export const flagOf = (o: AnyRow) => o.flag ?? flagName(o.key);

/** Every environment name a table reads: ours first, then the legacy ones. */
export function envNamesOf<C>(table: OptionTable<C>): string[] {
  return rowsOf(table).flatMap((o) => [envName(o.key), ...(o.legacyEnv ?? [])]);
}

// What a row accepts, in words: the long form completes "expected ..." in an error,
// the short form is what --help and the reference show.

const isUnbounded = (max: number) => max >= Number.MAX_SAFE_INTEGER;
/** What a text option's value hint says it takes. */
const TEXT_KINDS: Record<string, string> = { file: "a file path", dir: "a directory path" };

/** "a whole number of bytes from 64 to 4294967295": what an error says was expected. */
export function expected(o: AnyRow): string {
  switch (o.type) {
    case "integer": {
      const what = `a whole number${o.unit ? ` of ${o.unit}` : ""}`;
      return isUnbounded(o.max) ? `${what}, at least ${o.min}` : `${what} from ${o.min} to ${o.max}`;
    }
    case "seconds":
      return `a number of seconds, at least ${o.min}`;
    case "port":
      return "a port from 0 to 65535, or any";
    case "choice":
      return `one of ${o.choices.join(", ")}`;
    case "text":
      return o.empty ? "any text" : "a non-empty value";
    case "secret":
      return "a non-empty value";
    case "switch":
      return "1, true, yes, on, 0, false, no or off";
    case "custom":
      return o.accepts;
  }
}

/** "64-4294967295 bytes": the accepted range as --help and the reference show it. */
export function accepted(o: AnyRow): string {
  switch (o.type) {
    case "integer": {
      const range = isUnbounded(o.max) ? `${o.min} or more` : `${o.min}-${o.max}`;
      return o.unit ? `${range} ${o.unit}` : range;
    }
    case "seconds":
      return `${o.min} or more seconds`;
    case "port":
      return "0-65535 or any";
    case "choice":
      return o.choices.join(", ");
    case "text":
      return TEXT_KINDS[o.valueHint ?? ""] ?? (o.empty ? "text, may be empty" : "text");
    case "secret":
      return "text, never shown";
    case "switch":
      return "switch";
    case "custom":
      return o.accepts;
  }
}

/** One option as --help and the reference docs show it: the same words in both. */
export interface OptionDoc {
  flag: string;
  /** The environment names, ours first, then the legacy ones. */
  env: string[];
  /** As given on the command line; null when the option is unset by default. */
  default: string | null;
  accepts: string;
  repeatable: boolean;
  description: string;
}

export function describeOption(o: AnyRow): OptionDoc {
  const unset =
    o.default === null ||
    o.default === "" ||
    o.default === false ||
    (Array.isArray(o.default) && o.default.length === 0);
  return {
    flag: `--${flagOf(o)}`,
    env: [envName(o.key), ...(o.legacyEnv ?? [])],
    default: unset ? null : Array.isArray(o.default) ? o.default.join(",") : String(o.default),
    accepts: accepted(o),
    repeatable: o.repeatable === true,
    description: o.description,
  };
}

/** The text after a flag in --help: what it does, then what it takes, its default and where else it comes from. */
export function helpText(doc: OptionDoc): string {
  const facts = [
    doc.accepts,
    doc.repeatable ? "repeatable, or comma-separated" : null,
    doc.default !== null ? `default ${doc.default}` : null,
    `env ${doc.env.join(" or ")}`,
  ];
  return `${doc.description} [${facts.filter((f) => f !== null).join("; ")}]`;
}

/** citty's arg definitions for a table. No defaults: citty would report them as given, hiding the environment. */
export function argsDef<C>(table: OptionTable<C>): ArgsDef {
  const def: ArgsDef = {};
  for (const o of rowsOf(table)) {
    const description = helpText(describeOption(o));
    def[flagOf(o)] =
      o.type === "switch" ? { type: "boolean", description } : { type: "string", description, valueHint: o.valueHint };
  }
  return def;
}

function fail(o: AnyRow, flag: string, raw: string): never {
  // A secret, or a custom value that may hold one (user:password@ in a URL), is never echoed.
  if (o.type === "secret") throw new RelayError("E_CONFIG", `invalid value for --${flag}: it cannot be empty`);
  throw new RelayError("E_CONFIG", `invalid value for --${flag}: '${raw}' (expected ${expected(o)})`);
}

function wholeNumber(o: AnyRow, raw: string, flag: string, min: number, max: number): number {
  const t = raw.trim();
  const n = /^\d+$/.test(t) ? Number(t) : Number.NaN;
  if (!(n >= min && n <= max)) fail(o, flag, raw);
  return n;
}

const YES = ["1", "true", "yes", "on"];
const NO = ["0", "false", "no", "off", ""];

/** One value of a row, read from a flag or the environment (`flag` names where it came from). */
export function parseValue(o: AnyRow, raw: string, flag: string): unknown {
  const t = raw.trim();
  switch (o.type) {
    case "integer":
      return wholeNumber(o, raw, flag, o.min, o.max);
    case "seconds": {
      const n = /^\d+(\.\d+)?$/.test(t) ? Number(t) : Number.NaN;
      if (!(n >= o.min && n <= MAX_SECONDS)) fail(o, flag, raw);
      return n;
    }
    case "port": {
      if (t.toLowerCase() === "any") return 0;
      const n = wholeNumber(o, raw, flag, 0, 65535);
      return n === 0 && o.zero === "off" ? null : n;
    }
    case "choice": {
      const v = t.toLowerCase();
      if (!o.choices.includes(v)) fail(o, flag, raw);
      return v;
    }
    case "text":
    case "secret":
      if (t === "" && !(o.type === "text" && o.empty)) fail(o, flag, raw);
      return t;
    case "switch":
      if (YES.includes(t.toLowerCase())) return true;
      if (NO.includes(t.toLowerCase())) return false;
      return fail(o, flag, raw);
    case "custom":
      return o.parse(raw, flag);
  }
}

export type Env = Record<string, string | undefined>;

const needsValue = (flag: string) => new RelayError("E_CONFIG", `option --${flag} needs a value`);

/**
 * citty keeps only the last of a repeated flag (it calls node:util's parseArgs
 * without `multiple`, and its arg definitions have no way to ask for it), so
 * the values of repeatable flags are collected here from the raw arguments,
 * skipping the values of the other flags the way citty does.
 */
function repeated(rawArgs: readonly string[], rows: readonly AnyRow[]): Map<string, string[]> {
  const lists = new Set(rows.filter((o) => o.repeatable).map(flagOf));
  const valued = new Set(rows.filter((o) => o.type !== "switch").map(flagOf));
  const found = new Map<string, string[]>();
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!valued.has(name)) continue;
    const value = eq === -1 ? rawArgs[++i] : arg.slice(eq + 1);
    // `--token` last, or followed by another flag: citty drops it, and a dropped token would open the relay;
    // `--host --token SECRET` left the token a stray argument, echoed in the refusal. With `=` the value is
    // whatever follows it, "--" too (a base64url token may start so): `--token=--x`.
    if (value === undefined || (eq === -1 && value.startsWith("--"))) throw needsValue(name);
    if (lists.has(name)) found.set(name, [...(found.get(name) ?? []), value]);
  }
  return found;
}

/** citty accepts any flag and any positional; the relay refuses both, naming the first. */
function checkKnown(args: ParsedArgs, rows: readonly AnyRow[]): void {
  const known = new Set(["_"]);
  for (const o of rows) {
    const flag = flagOf(o);
    known.add(flag).add(flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
  }
  const unknown = Object.keys(args).find((k) => !known.has(k));
  if (unknown !== undefined)
    throw new RelayError("E_CONFIG", `unknown option '${unknown.length === 1 ? "-" : "--"}${unknown}' (see --help)`);
  const extra = args._[0];
  if (extra !== undefined)
    throw new RelayError(
      "E_CONFIG",
      // As long as a token (16 characters at least), it may be one whose flag was mistyped: not repeated.
      `unexpected argument ${extra.length >= 16 ? `of ${extra.length} characters, not shown` : `'${extra}'`}` +
        " (options start with --; see --help)",
    );
}

/** One option's value: flags beat `SOVA_RELAY_*`, which beats the seed's names, which beat defaults. */
function optionValue(o: AnyRow, given: unknown, env: Env): unknown {
  const flag = flagOf(o);
  if (typeof given === "boolean") {
    if (o.type !== "switch") throw needsValue(flag); // `--no-port`
    return given;
  }
  if (given === "") throw needsValue(flag); // citty's value for a flag given none
  if (Array.isArray(given)) return given.flatMap((v: string) => listOf(o, v, flag));
  if (typeof given === "string") return parseValue(o, given, flag);
  // Ours set but empty is a mistake (`SOVA_RELAY_TOKENS=$(openssl ...)` without openssl), never "unset":
  // taken as unset, an empty token list would open the relay. The seed's names (RUST_LOG) keep their old sense.
  const own = envName(o.key);
  const name = env[own] !== undefined ? own : o.legacyEnv?.find((n) => env[n] !== undefined && env[n] !== "");
  if (name === undefined) return o.default;
  if (env[name] === "" && !(o.type === "text" && o.empty))
    throw new RelayError("E_CONFIG", `${name} is set but empty: give it a value, or unset it for the default`);
  const from = `${flag} (from ${name})`;
  if (name !== envName(o.key) && o.legacyParse) return o.legacyParse(env[name]!, from);
  return o.repeatable ? listOf(o, env[name]!, from) : parseValue(o, env[name]!, from);
}

/**
 * A repeatable option's values from one flag or variable: comma-separated,
 * empty items skipped, but never all of them: `--token ''` or `--allow ,`
 * taken as "none" would open what the host meant to close.
 */
function listOf(o: AnyRow, raw: string, flag: string): unknown[] {
  const items = raw.split(",").filter((item) => item.trim() !== "");
  if (items.length === 0) throw needsValue(flag);
  return items.map((item) => parseValue(o, item, flag));
}

/** The values of a table's options, from citty's parsed arguments and the environment. */
export function resolveOptions<C>(
  table: OptionTable<C>,
  args: ParsedArgs,
  rawArgs: readonly string[],
  env: Env = process.env,
): C {
  const rows = rowsOf(table);
  const lists = repeated(rawArgs, rows); // first: `--token --port 0` is a missing token, not a stray `0`
  checkKnown(args, rows);
  const out: Record<string, unknown> = {};
  for (const o of rows) {
    const flag = flagOf(o);
    // citty reads `--no-allow` as allow=false: a list cannot be switched off, so it is refused as `--no-port` is.
    const given = o.repeatable && args[flag] !== false ? lists.get(flag) : args[flag];
    const value = optionValue(o, given, env);
    // The one place where seconds become milliseconds.
    out[o.key] = o.key.endsWith("Ms") && typeof value === "number" ? value * 1000 : value;
  }
  return out as C;
}
