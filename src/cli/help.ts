/**
 * `--help`, laid out for the terminal it is read on. citty's renderUsage pads every
 * option into one table as wide as its longest flag plus its longest description
 * (about 350 columns for the relay), which a terminal folds into an unreadable block.
 * Here descriptions wrap to the terminal's width (100 columns when the output is not
 * a terminal) under a hanging indent: beside their names when the names are short
 * (commands), under them when they are long (options). The words are citty's: the
 * same sections, flags, value hints and descriptions.
 */
import type { ArgDef, CommandDef } from "citty";

/** The width used when the output is not a terminal (a pipe, a file, a pager). */
export const PIPE_COLUMNS = 100;
/** Wider than this, a column of names goes above its descriptions instead of beside them. */
const MAX_NAME_COLUMN = 30;
/** The narrowest a description is wrapped to, whatever the terminal says. */
const MIN_TEXT = 30;

// Colour codes as citty writes them; forStream (terminal.ts) strips them where colour is not wanted.
const cyan = (s: string) => `\u001b[36m${s}\u001b[39m`;
const gray = (s: string) => `\u001b[90m${s}\u001b[39m`;
const heading = (s: string) => `\u001b[4m\u001b[1m${s}\u001b[22m\u001b[24m`;

/** The width to wrap to for `stream`: its columns on a terminal, else PIPE_COLUMNS. */
export function helpWidth(stream: { isTTY?: boolean; columns?: number }): number {
  return stream.isTTY && stream.columns ? stream.columns : PIPE_COLUMNS;
}

/** `text` cut into lines of at most `width` characters at spaces; a longer word stays whole on its own line. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "" || lines.length === 0) lines.push(line);
  return lines;
}

/**
 * Rows of [name, description], indented by two: two columns when every name fits in MAX_NAME_COLUMN, each
 * description wrapped beside its name; otherwise each name on its line and its description under it, indented.
 */
export function layoutRows(rows: Array<[string, string]>, width: number): string {
  const widest = Math.max(...rows.map(([name]) => name.length));
  const beside = widest + 4 <= MAX_NAME_COLUMN;
  const indent = beside ? 2 + widest + 4 : 6;
  const lines = rows.flatMap(([name, text]) => {
    const body = wrap(text, Math.max(MIN_TEXT, width - indent));
    const pad = " ".repeat(indent);
    if (!beside) return [`  ${cyan(name)}`, ...body.filter((l) => l !== "").map((l) => `${pad}${l}`)];
    const first = `  ${cyan(name)}${" ".repeat(indent - 2 - name.length)}${body[0]}`.trimEnd();
    return [first, ...body.slice(1).map((l) => `${pad}${l}`)];
  });
  return lines.join("\n");
}

type Resolvable<T> = T | Promise<T> | (() => T | Promise<T>);
const resolve = async <T>(v: Resolvable<T>): Promise<T> => (typeof v === "function" ? (v as () => T)() : v);

/** How citty shows a flag's value: `=<hint>`, or `=<flag_name>` without a hint; nothing for a switch. */
function valueHint(name: string, arg: ArgDef): string {
  if (arg.type === "boolean" || arg.type === "positional") return arg.valueHint ? `=<${arg.valueHint}>` : "";
  if (arg.type === "enum" && arg.options?.length) return `=<${arg.options.join("|")}>`;
  return `=<${arg.valueHint ?? name.replace(/-/g, "_")}>`;
}

/** The sections of a command's usage: its options (and positional arguments), its sub-commands. */
async function sections(cmd: CommandDef) {
  const args = Object.entries((await resolve(cmd.args ?? {})) as Record<string, ArgDef>);
  const options: Array<[string, string]> = [];
  const positional: Array<[string, string]> = [];
  const usage: string[] = [];
  for (const [name, arg] of args) {
    if (arg.type === "positional") {
      positional.push([name.toUpperCase() + valueHint(name, arg), arg.description ?? ""]);
      usage.push(
        arg.required === false || arg.default !== undefined ? `[${name.toUpperCase()}]` : `<${name.toUpperCase()}>`,
      );
      continue;
    }
    const aliases = ([] as string[]).concat((arg as { alias?: string | string[] }).alias ?? []).map((a) => `-${a}`);
    options.push([[...aliases, `--${name}`].join(", ") + valueHint(name, arg), arg.description ?? ""]);
  }
  const commands: Array<[string, string]> = [];
  for (const [name, sub] of Object.entries((await resolve(cmd.subCommands ?? {})) as Record<string, CommandDef>)) {
    const meta = await resolve((await resolve(sub)).meta ?? {});
    if (!meta.hidden) commands.push([name, meta.description ?? ""]);
  }
  if (commands.length > 0) usage.push(commands.map(([name]) => name).join("|"));
  return { options, positional, commands, usage };
}

/** `cmd`'s usage (after `parent`'s name), wrapped to `width` columns. */
export async function renderHelp(cmd: CommandDef, parent: CommandDef | undefined, width: number): Promise<string> {
  const meta = await resolve(cmd.meta ?? {});
  const parentMeta = await resolve(parent?.meta ?? {});
  const name = [parentMeta.name, meta.name].filter(Boolean).join(" ");
  const version = meta.version ?? parentMeta.version;
  const { options, positional, commands, usage } = await sections(cmd);
  const hasOptions = options.length + positional.length > 0;
  const out = [
    wrap(`${meta.description} (${name}${version ? ` v${version}` : ""})`, width)
      .map(gray)
      .join("\n"),
    "",
    `${heading("USAGE")} ${cyan([name, hasOptions ? "[OPTIONS]" : "", ...usage].filter(Boolean).join(" "))}`,
    "",
  ];
  if (positional.length > 0) out.push(heading("ARGUMENTS"), "", layoutRows(positional, width), "");
  if (options.length > 0) out.push(heading("OPTIONS"), "", layoutRows(options, width), "");
  if (commands.length > 0)
    out.push(
      heading("COMMANDS"),
      "",
      layoutRows(commands, width),
      "",
      `Use ${cyan(`${name} <command> --help`)} for more information about a command.`,
    );
  return out.join("\n");
}
