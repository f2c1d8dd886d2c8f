/**
 * What the command line prints for people: citty colours its usage and some of
 * its errors whatever the output is, so colour codes landed in pipes, files and
 * logs. Here colour survives only on a terminal, and not when NO_COLOR is set
 * (any non-empty value, as no-color.org says) or TERM is dumb.
 */
import { stripVTControlCharacters } from "node:util";

export function colourWanted(stream: { isTTY?: boolean }, env: Record<string, string | undefined> = process.env) {
  return stream.isTTY === true && !env.NO_COLOR && env.TERM !== "dumb";
}

/** `text` as it should reach `stream`. */
export function forStream(text: string, stream: { isTTY?: boolean }): string {
  return colourWanted(stream) ? text : stripVTControlCharacters(text);
}

/**
 * A progress line for people, on stderr so stdout stays the command's output. Not console.error: Bun
 * paints that red on a terminal, and "Replaying 10 updates" or "wrote 10 updates" is no error.
 */
export function status(line: string): void {
  process.stderr.write(`${line}\n`);
}
