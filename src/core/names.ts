/**
 * Instance names (docs/protocol.md, "Connection flow" 3). Players see each other by
 * name, so a name must look like what it is: look-alikes (`alice` beside
 * Cyrillic `аlice`, `alice` + U+200B, `alice `, NFC and NFD `café`) were accepted
 * as different players before, and bidi controls or line separators in a name
 * could reorder or forge a log line.
 */
export const MAX_NAME_CHARS = 64;

// Cc controls, Cf format characters (zero-width, bidi controls, soft hyphen, tags),
// line and paragraph separators, and the blank characters that render as nothing.
// Variation selectors and the grapheme joiner are combining marks: listed outside the class.
// An emoji keyboard puts U+FE0F after a heart, so text and emoji presentation selectors
// are fine right after an emoji; anywhere else they only make a look-alike. ZWJ (a Cf)
// joins emoji sequences the same way.
const INVISIBLE = new RegExp(
  String.raw`[\p{Cc}\p{Zl}\p{Zp}\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0]` +
    String.raw`|(?<!\p{Extended_Pictographic}\ufe0f?)\u200d|(?!\u200d)\p{Cf}|\u034f|[\u180b-\u180f]|[\ufe00-\ufe0d]` +
    String.raw`|(?<!\p{Extended_Pictographic})[\ufe0e\ufe0f]|[\u{e0100}-\u{e01ef}]`,
  "u",
);
const LATIN = /\p{Script=Latin}/u;
const LOOKALIKE_SCRIPTS = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;

/**
 * What two names are compared by in a session, and what a name is claimed under
 * across a cluster: NFC-normalised and trimmed, so names that differ only by
 * normalisation or surrounding whitespace are the same name. A type of its own,
 * so that a raw name cannot be passed where a claim's key is meant (a claim made
 * under the key and released under the raw name stayed held on the cluster).
 */
export type NameKey = string & { readonly __nameKey: unique symbol };

export function nameKey(name: string): NameKey {
  return name.normalize("NFC").trim() as NameKey;
}

export type NameCheck = { ok: true; key: NameKey } | { ok: false };

/** The name itself stays as the player typed it; `key` is its NameKey. */
export function checkInstanceName(name: string): NameCheck {
  const key = nameKey(name);
  if (key.length === 0 || INVISIBLE.test(name)) return { ok: false };
  if (LATIN.test(key) && LOOKALIKE_SCRIPTS.test(key)) return { ok: false };
  // Characters as Rust counts them (`chars()`): code points, not UTF-16 units.
  let count = 0;
  for (const _ of name) if (++count > MAX_NAME_CHARS) return { ok: false };
  return { ok: true, key };
}

export function isValidInstanceName(name: string): boolean {
  return checkInstanceName(name).ok;
}
