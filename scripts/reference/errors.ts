/**
 * docs/reference/errors.md: every `Error` text a Sova instance can receive
 * (src/protocol/wire-errors.ts), made by the functions that make them, with
 * what each means and what fixes it.
 */
import { WIRE_ERROR_HELP, WIRE_ERRORS } from "../../src/protocol/wire-errors.ts";
import { code, generatedNote, page, table } from "./markdown.ts";

type Key = keyof typeof WIRE_ERRORS;

/** The text as the relay sends it, for the example arguments. */
export function errorText(key: Key): string {
  const make = WIRE_ERRORS[key] as (...args: readonly (string | number)[]) => string;
  return make(...WIRE_ERROR_HELP[key].example);
}

const KEYS = Object.keys(WIRE_ERRORS) as Key[];

function rows(when: "registration" | "registered"): string[][] {
  return KEYS.filter((k) => WIRE_ERROR_HELP[k].when === when).map((k) => {
    const h = WIRE_ERROR_HELP[k];
    return [code(errorText(k)), h.closes ? "closed" : "stays", h.meaning, h.fix];
  });
}

export function errorsPage(): string {
  const headers = ["Error text (example)", "connection", "what it means", "what fixes it"];
  return page(
    generatedNote("src/protocol/wire-errors.ts (scripts/reference/errors.ts)"),
    "# Error texts",
    "What the relay sends a Sova instance in an `Error { message }` frame, and Sova shows to its player." +
      " Numbers, names and versions in the texts are examples. The players' guide" +
      " ([players.md](../players.md#when-the-relay-says-no)) explains the common ones.",
    "## While registering",
    "Each of these is the only answer to the `RegisterInstance`; the relay closes the connection after it." +
      " They are checked in this order: cool-down, version, token, capacity, name, name in use, registrations" +
      " per address.",
    table(headers, rows("registration")),
    "## Once registered",
    table(headers, rows("registered")),
  );
}
