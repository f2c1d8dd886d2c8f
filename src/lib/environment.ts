/**
 * Settings in the environment that nothing reads. A mistyped name
 * (`SOVA_RELAY_TOKEN` for `SOVA_RELAY_TOKENS`) used to be ignored without a
 * word, and a relay meant to be private ran one open session: every
 * `SOVA_RELAY_*` name a command does not read is an error, naming the command
 * that does read it, or the closest name this one reads. Values are never
 * shown: they may be tokens.
 */
import { RelayError } from "./errors.ts";
import { ENV_PREFIX, type Env } from "./options.ts";

/** Who reads which names: a command (`sova-relay tunnel`), or a script (`install.sh`). */
export interface EnvScope {
  readonly command: string;
  readonly names: readonly string[];
}

/** Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate `name` was most likely meant as: a few edits away (about one in
 * three letters of the part after the prefix), or one name the start of the other.
 */
export function closestName(name: string, candidates: readonly string[]): string | null {
  const bare = (n: string) => (n.startsWith(ENV_PREFIX) ? n.slice(ENV_PREFIX.length) : n);
  const wanted = bare(name);
  let best: string | null = null;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const other = bare(c);
    const prefix = Math.min(wanted.length, other.length) >= 4 && (other.startsWith(wanted) || wanted.startsWith(other));
    const distance = editDistance(wanted, other);
    const close = distance <= Math.max(2, Math.floor(other.length / 3));
    // A near spelling beats a shared start; among equals, the first candidate (table order).
    const score = close ? distance : prefix ? 100 + Math.abs(other.length - wanted.length) : Number.POSITIVE_INFINITY;
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Why each `SOVA_RELAY_*` name in `env` that `own` does not read is wrong, one
 * phrase a name (sorted). `tolerated` names are read by a command sharing this
 * one's environment (the relay's, for `health` in its container) and pass.
 */
export function strayNames(
  env: Env,
  own: EnvScope,
  others: readonly EnvScope[],
  tolerated: readonly string[] = [],
): string[] {
  const known = new Set([...own.names, ...tolerated]);
  const stray = Object.keys(env)
    .filter((name) => name.startsWith(ENV_PREFIX) && !known.has(name))
    .sort();
  return stray.map((name) => {
    const owners = others.filter((s) => s.names.includes(name)).map((s) => `\`${s.command}\``);
    if (owners.length > 0) return `${name} is read by ${owners.join(" and ")}, not by \`${own.command}\``;
    const near = closestName(name, [...own.names, ...tolerated]);
    return `${name} is not a setting of \`${own.command}\`${near ? `; did you mean ${near}?` : ""}`;
  });
}

/** Stops a command whose environment holds a name nothing it runs with reads: exit 2, one line. */
export function checkEnvironment(
  env: Env,
  own: EnvScope,
  others: readonly EnvScope[],
  tolerated: readonly string[] = [],
): void {
  const stray = strayNames(env, own, others, tolerated);
  if (stray.length === 0) return;
  throw new RelayError(
    "E_CONFIG",
    `${stray.join("; ")} (unset ${stray.length === 1 ? "it or fix its name" : "them or fix their names"};` +
      " --help lists every setting with its environment name)",
  );
}
