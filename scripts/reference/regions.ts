/**
 * Generated parts of hand-written pages: a region opened by
 * `<!-- generated:NAME:ARG -->` and closed by `<!-- /generated -->` is filled by
 * the generator NAME (the players' guide takes its refusals from the Error
 * table this way). `npm run docs` fills them; the reference test checks them.
 */
import { WIRE_ERROR_HELP, WIRE_ERRORS } from "../../src/protocol/wire-errors.ts";
import { errorText } from "./errors.ts";
import { code, table } from "./markdown.ts";

type Key = keyof typeof WIRE_ERRORS;

/** Some Error texts, as a table for players. */
function errors(arg: string): string {
  const keys = arg.split(",") as Key[];
  for (const k of keys) if (!(k in WIRE_ERRORS)) throw new Error(`generated:errors: no Error text '${k}'`);
  return table(
    ["Sova shows", "what it means", "what to do"],
    keys.map((k) => [code(errorText(k)), WIRE_ERROR_HELP[k].meaning, WIRE_ERROR_HELP[k].fix]),
  );
}

const GENERATORS: Record<string, (arg: string) => string> = { errors };

const REGION = /(<!-- generated:([a-z-]+):([^ ]*) -->\n)[\s\S]*?(<!-- \/generated -->)/g;

/** The page with every region filled by its generator as the code says now. */
export function fillRegions(text: string): string {
  return text.replace(REGION, (_all, open: string, name: string, arg: string, close: string) => {
    const make = GENERATORS[name];
    if (!make) throw new Error(`unknown generated region '${name}'`);
    return `${open}${make(arg)}\n${close}`;
  });
}
