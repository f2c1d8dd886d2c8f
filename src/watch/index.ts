/**
 * Watching a session: what the relay's spectator page and recordings read Sova's
 * edits with. Pure: no sockets, files or timers of its own (the watcher's drain is
 * scheduled through what it is given).
 *
 *   value.ts     MessagePack as rmp-serde reads it, bounded
 *   edits.ts     update_data -> a typed edit (ClientMessage at Sova 1b7deac)
 *   model.ts     the scene as the players intended it, by Sova's own rules
 *   feed.ts      one line of text per edit
 *   session.ts   one watched session: model, feed, players, versions, views
 *   broadcast.ts the sender and update_data of a StateBroadcast frame
 *   watcher.ts   the bounded queue between the relay and the sessions
 *   keys.ts      spectator keys: made, digested, compared in constant time
 */
export { parseBroadcast, type BroadcastParts } from "./broadcast.ts";
export {
  decodeEdit,
  type Decoded,
  type Edit,
  type FrameData,
  type Index,
  type LineData,
  type Timing,
} from "./edits.ts";
export { describe, type FeedEntry } from "./feed.ts";
export { keyDigest, makeKey, type SpectatorGrant, type SpectatorKeys, spectatorKeys } from "./keys.ts";
export { applyEdit, type Cell, emptyScene, type LineModel, MODEL_LIMITS, type SceneModel } from "./model.ts";
export { colourOf, FEED_SIZE, type LineView, type Player, type View, WatchedSession } from "./session.ts";
export { readValue, type Value } from "./value.ts";
export { createWatcher, emptyWatchStats, type Watcher, type WatcherOptions, type WatchStats } from "./watcher.ts";
