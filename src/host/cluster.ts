/**
 * --cluster options from the relay's configuration to a running cluster node,
 * returned once the node may admit registrations: it shares the cluster's session
 * secret (src/cluster/secret.ts), kept in --state-dir when there is one.
 */
import { timingSafeEqual } from "node:crypto";
import type { RelayConfig } from "./config.ts";
import { RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { type ClusterNode, type ClusterOptions, defaultNodeName, startCluster } from "../cluster/node.ts";
import { givenSecret, type SecretOptions } from "../cluster/secret.ts";
import { keepSessionSecret, readSessionSecret, sessionKeyPath } from "../storage/session-key.ts";

function secretOptions(config: RelayConfig): SecretOptions {
  const dir = config.stateDir;
  return {
    given: config.clusterSecret ? givenSecret(config.clusterSecret) : undefined,
    remembered: dir ? (readSessionSecret(dir) ?? undefined) : undefined,
    keptIn: dir ? sessionKeyPath(dir) : undefined,
    tokens: config.tokens.length > 0,
    remember: dir
      ? (secret) => {
          const kept = keepSessionSecret(dir, secret);
          if (kept.length !== secret.length || !timingSafeEqual(kept, secret))
            throw new RelayError("E_CONFIG", `'${sessionKeyPath(dir)}' appeared meanwhile with another session key`);
        }
      : undefined,
  };
}

/** `tuning`: timings no setting exposes (tests set them). */
export async function clusterFromConfig(
  config: RelayConfig,
  log: Logger,
  tuning: Pick<ClusterOptions, "retryMs"> = {},
): Promise<ClusterNode> {
  const node = startCluster(
    {
      servers: config.cluster,
      nodeName: config.nodeName || defaultNodeName(),
      creds: config.clusterCreds || undefined,
      ca: config.clusterCa || undefined,
      user: config.clusterUser || undefined,
      pass: config.clusterPassword || undefined,
      token: config.clusterToken || undefined,
      maxMessageSize: config.maxMessageSize,
      history: {
        limits: { maxEntries: config.history, maxBytes: config.historyBytes, maxAgeMs: config.historyAgeMs },
        sessions: Math.max(1, config.tokens.length),
      },
      secret: secretOptions(config),
      ...tuning,
    },
    log,
  );
  try {
    await node.ready;
  } catch (error) {
    await node.close();
    throw error;
  }
  return node;
}
