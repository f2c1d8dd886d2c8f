/**
 * What the relay is built from, read off the configuration: the history (and its
 * database), the guard, and the relay core wired to both.
 */
import type { Logger } from "../lib/log.ts";
import { addressGroup } from "../lib/cidr.ts";
import { atTurnEnd } from "../lib/outbox.ts";
import { createGuard, type Guard } from "../transport/guard.ts";
import { createHistory, type History } from "../core/history.ts";
import { createRelay, type Relay } from "../core/index.ts";
import { loadSessionSecret } from "../storage/session-key.ts";
import { type HistoryStore, openHistoryStore } from "../storage/history-store.ts";
import type { ServerConfig, ServerLink } from "./start.ts";
import { startWatching, type Watching } from "./watching.ts";

export interface RelayParts {
  store: HistoryStore | null;
  history: History;
  guard: Guard;
  relay: Relay;
  watching: Watching;
}

/** The sessions' history: the cluster's, or this node's, read back from its state directory when it has one. */
function _history(
  config: ServerConfig,
  log: Logger,
  link?: ServerLink,
): { store: HistoryStore | null; history: History } {
  // A cluster keeps the history once for every node (src/cluster/history.ts).
  const store =
    !link?.history && config.history > 0 && config.stateDir
      ? openHistoryStore(config.stateDir, { reset: config.stateReset, log })
      : null;
  const history =
    link?.history ??
    createHistory(
      { maxEntries: config.history, maxBytes: config.historyBytes, maxAgeMs: config.historyAgeMs },
      store ?? undefined,
      store?.epoch,
    );
  if (store) {
    const loaded = store.load(history);
    log.info(
      "history_loaded",
      `History database ${store.path}: ${loaded} updates in ${history.sizes().size} sessions` +
        `${config.stateReset ? " (reset)" : ""}`,
      { entries: loaded },
    );
  }
  return { store, history };
}

export function buildRelay(config: ServerConfig, log: Logger, link?: ServerLink): RelayParts {
  const { store, history } = _history(config, log, link);
  const watching = startWatching(config, log, history);
  const guard = createGuard({
    allow: config.allow,
    deny: config.deny,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxFailedRegistrations: config.maxFailedRegistrations,
    cooldownMs: config.failedRegistrationCooldownMs,
  });
  const relay = createRelay(
    {
      expectedVersion: config.expectedVersion,
      maxInstances: config.maxInstances,
      maxInstancesPerSession: config.maxInstancesPerSession,
      maxInstancesPerAddress: config.maxInstancesPerIp,
      rateLimit: config.rateLimit,
      rateLimitBytes: config.rateLimitBytes,
      maxMessageSize: config.maxMessageSize,
      tokens: config.tokens,
      sessionSecret: link?.sessionSecret ?? (config.stateDir ? loadSessionSecret(config.stateDir) : undefined),
      handshakeTimeoutMs: config.handshakeTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      handshakeMaxBytes: config.handshakeMaxBytes,
      maxHandshakes: config.maxHandshakes,
      maxHandshakesPerAddress: config.maxHandshakesPerIp,
      maxRegistrationsPerAddress: config.maxRegistrationsPerIp,
      nudgeIntervalMs: config.nudgeInterval,
      replayTimeoutMs: config.replayTimeoutMs,
      resumeWindowMs: config.resumeWindowMs,
      resumeBufferBytes: config.resumeBufferBytes,
      history,
      link,
      endOfTurn: atTurnEnd,
      watch: watching.watcher,
      onRegistrationFailed(ip) {
        if (guard.registrationFailed(ip, Date.now())) {
          log.warn(
            "cooldown_started",
            `Address ${ip} used up its ${config.maxFailedRegistrations} failed registrations;` +
              ` every registration from ${addressGroup(ip)}` +
              ` refused for ${config.failedRegistrationCooldownMs / 1000} s`,
            {
              ip,
              reason: "failed_registrations",
            },
          );
        }
      },
      registrationWait: (ip) => guard.registrationWait(ip, Date.now()),
    },
    log,
  );
  link?.attach(relay.remote);
  return { store, history, guard, relay, watching };
}
