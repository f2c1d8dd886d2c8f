/**
 * The spectator file: which sessions can be watched, each with the SHA-256
 * digest of its spectator key (never the key). One `SESSION DIGEST` a line,
 * `#` comments; written with mode 0600 by `sova-relay watch`, read by the relay
 * at start and on SIGHUP. Being digests only, it can be copied to every node
 * of a cluster.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { RelayError } from "../lib/errors.ts";
import { readHostFile } from "../lib/files.ts";

export const SPECTATOR_FILE = "spectators";

export interface SpectatorEntry {
  session: string;
  digest: string;
}

const SESSION = /^([0-9a-f]{12}|open)$/;
const DIGEST = /^[0-9a-f]{64}$/;

/** The file in a state directory. */
export const spectatorPath = (stateDir: string): string => join(stateDir, SPECTATOR_FILE);

/** The entries of `path`; none when it does not exist and `optional`. A malformed line stops with its number. */
export function readSpectatorFile(path: string, optional = false): SpectatorEntry[] {
  if (optional && !existsSync(path)) return [];
  const text = readHostFile(path, "the spectator file");
  const out: SpectatorEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [session, digest, extra] = line.split(/\s+/);
    if (!session || !digest || extra !== undefined || !SESSION.test(session) || !DIGEST.test(digest))
      throw new RelayError(
        "E_CONFIG",
        `the spectator file '${path}', line ${i + 1}: expected a session (12 hex digits or 'open') and a key digest;` +
          " make entries with `sova-relay watch enable`",
      );
    out.push({ session, digest });
  });
  return out;
}

/**
 * Replaces the file whole (a reader never sees half of it), readable by its owner only: the owner of the
 * directory, so that root running `sova-relay watch enable` in a systemd DynamicUser's state directory leaves
 * a file the relay can read.
 */
export function writeSpectatorFile(path: string, entries: readonly SpectatorEntry[]): void {
  const text =
    "# sova-relay spectator keys: session, SHA-256 digest of its key (the keys themselves are not kept)\n" +
    entries.map((e) => `${e.session} ${e.digest}\n`).join("");
  const temp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(temp, text, { mode: 0o600 });
    chmodSync(temp, 0o600);
    const dir = statSync(dirname(path));
    if (process.getuid?.() === 0 && dir.uid !== 0) chownSync(temp, dir.uid, dir.gid);
    renameSync(temp, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unwritable";
    throw new RelayError("E_CONFIG", `cannot write the spectator file '${path}' (${code})`, { cause: error });
  }
}
