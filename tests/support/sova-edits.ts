/**
 * The shared fixture of Sova's own edits (copied from ../shared/wire/sova-edits.json):
 * each case's update_data bytes and its value, with the integers JSON.parse would
 * round and the floats JSON cannot hold put back from the case's notes.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "./paths.ts";

export interface SovaEdit {
  name: string;
  variant: string;
  relayed: boolean;
  about: string;
  bytes: Uint8Array;
  /** The value, exact: bigint past 2^53, NaN and the infinities where the notes say. */
  value: unknown;
}

interface RawCase {
  name: string;
  variant: string;
  relayed: boolean;
  about: string;
  hex: string;
  value: unknown;
  notes?: { big_integers?: Record<string, string>; non_finite_floats?: Record<string, string> };
}

const NON_FINITE: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": -Infinity,
};

/** Sets the value at a JSON pointer (RFC 6901). */
function setAt(root: unknown, pointer: string, value: unknown): unknown {
  const path = pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (path.length === 0) return value;
  let at = root as Record<string, unknown>;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>;
  at[path.at(-1)!] = value;
  return root;
}

let loaded: SovaEdit[] | null = null;

export function loadSovaEdits(): SovaEdit[] {
  loaded ??= read();
  return loaded;
}

function read(): SovaEdit[] {
  const raw = JSON.parse(readFileSync(join(FIXTURES, "sova-edits.json"), "utf8")) as { cases: RawCase[] };
  return raw.cases.map((c) => {
    let value = c.value;
    for (const [p, text] of Object.entries(c.notes?.big_integers ?? {})) value = setAt(value, p, BigInt(text));
    for (const [p, text] of Object.entries(c.notes?.non_finite_floats ?? {})) value = setAt(value, p, NON_FINITE[text]);
    return {
      name: c.name,
      variant: c.variant,
      relayed: c.relayed,
      about: c.about,
      bytes: Buffer.from(c.hex, "hex"),
      value,
    };
  });
}

export function sovaEdit(name: string): SovaEdit {
  const found = loadSovaEdits().find((c) => c.name === name);
  if (!found) throw new Error(`no fixture case ${name}`);
  return found;
}
