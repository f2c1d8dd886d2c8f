/**
 * Spectators, put together: the spectator file read into keys (at start and on
 * SIGHUP), the watcher the relay hands watched sessions' frames to, and each newly
 * watched session's model primed from the relay's history, so a page opened
 * mid-concert can show the scene from the last SetScene kept.
 */
import type { History } from "../core/history.ts";
import type { Logger } from "../lib/log.ts";
import { readSpectatorFile, spectatorPath } from "../storage/spectator-file.ts";
import { createWatcher, type SpectatorKeys, spectatorKeys, type Watcher } from "../watch/index.ts";
import type { RelayConfig } from "./config.ts";

/** History replayed into a newly watched session's model, at most (the newest): well within the watcher's queue. */
const PRIME_FRAMES = 2048;
const PRIME_BYTES = 8 << 20;

/** The newest frames of `frames` within the priming bounds, oldest first. */
function newest(frames: Uint8Array[]): Uint8Array[] {
  let bytes = 0;
  let start = frames.length;
  while (start > 0 && frames.length - start < PRIME_FRAMES && bytes + frames[start - 1]!.length <= PRIME_BYTES)
    bytes += frames[--start]!.length;
  return frames.slice(start);
}

export interface Watching {
  readonly watcher: Watcher;
  /** The keys now. */
  keys(): SpectatorKeys;
  /** Reads the spectator file again; throws (keeping what was loaded) when it is bad. */
  reload(): void;
}

export function startWatching(
  config: Pick<RelayConfig, "spectatorFile" | "stateDir">,
  log: Logger,
  history?: History,
): Watching {
  const watcher = createWatcher({ log });
  const path = config.spectatorFile || (config.stateDir ? spectatorPath(config.stateDir) : "");
  let keys: SpectatorKeys = spectatorKeys([]);

  function load(): void {
    // The default place may well hold no file; a file named with --spectator-file must exist.
    const entries = path ? readSpectatorFile(path, !config.spectatorFile) : [];
    const before = keys.sessions;
    keys = spectatorKeys(entries);
    watcher.watch(keys.sessions);
    const now = Date.now();
    for (const session of keys.sessions) {
      if (before.has(session) || !history?.enabled) continue;
      for (const frame of newest(history.replay(session, now))) watcher.push(session, frame, now);
    }
    if (path)
      log.info(
        "watch_keys_loaded",
        `Spectator keys from ${path}: ${keys.sessions.size} session${keys.sessions.size === 1 ? "" : "s"} can be watched`,
        { sessions: keys.sessions.size },
      );
  }

  load();
  return { watcher, keys: () => keys, reload: load };
}
