/** PROTOCOL.md 3: empty, over 64 characters, or holding control characters. */
export const MAX_NAME_CHARS = 64;

// Unicode category Cc: C0, DEL and C1.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function isValidInstanceName(name: string): boolean {
  if (name.length === 0 || CONTROL.test(name)) return false;
  // Characters as Rust counts them (`chars()`): code points, not UTF-16 units.
  let count = 0;
  for (const _ of name) if (++count > MAX_NAME_CHARS) return false;
  return true;
}
