/** --cluster options from the relay's configuration to a running cluster node. */
import type { RelayConfig } from "./config.ts";
import type { Logger } from "../lib/log.ts";
import { defaultNodeName, startCluster, type ClusterNode } from "../cluster/node.ts";

export function clusterFromConfig(config: RelayConfig, log: Logger): ClusterNode {
  return startCluster(
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
    },
    log,
  );
}
