/**
 * Which build this is: version, commit and build target. scripts/build.ts bakes
 * them into a compiled binary with Bun's `define`, so a binary tells what it was
 * built from wherever it runs. From source there is nothing baked in: the version
 * comes from package.json and the commit from git, asked once and only when wanted
 * (the relay's start-up does not wait on a subprocess).
 */
import pkg from "../../package.json" with { type: "json" };

// Replaced by literals in a compiled binary; undeclared (typeof "undefined") from source.
declare const __SOVA_RELAY_VERSION__: string;
declare const __SOVA_RELAY_COMMIT__: string;
declare const __SOVA_RELAY_TARGET__: string;

export interface BuildInfo {
  version: string;
  /** Short git commit, or "unknown" where git or the repository is missing. */
  commit: string;
  /** The `bun build --compile` target, or "source". */
  target: string;
}

let _info: BuildInfo | undefined;

function _sourceCommit(): string {
  try {
    const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], {
      cwd: import.meta.dir,
      stdout: "pipe",
      stderr: "ignore",
    });
    const commit = git.stdout.toString().trim();
    return git.exitCode === 0 && /^[0-9a-f]{4,40}$/.test(commit) ? commit : "unknown";
  } catch {
    return "unknown"; // no git on this machine
  }
}

export function buildInfo(): BuildInfo {
  _info ??=
    typeof __SOVA_RELAY_COMMIT__ === "string"
      ? { version: __SOVA_RELAY_VERSION__, commit: __SOVA_RELAY_COMMIT__, target: __SOVA_RELAY_TARGET__ }
      : { version: pkg.version, commit: _sourceCommit(), target: "source" };
  return _info;
}

/** What `sova-relay --version` prints: `sova-relay 0.1.0 (commit 1a2b3c4, target bun-linux-x64)`. */
export function versionLine(info: BuildInfo = buildInfo()): string {
  return `sova-relay ${info.version} (commit ${info.commit}, target ${info.target})`;
}
