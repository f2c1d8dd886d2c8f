import { credsAuthenticator, type ConnectionOptions } from "@nats-io/nats-core";
import type { HistoryLimits } from "../core/history.ts";
import type { SecretOptions } from "./secret.ts";
import { readHostFile } from "../lib/files.ts";

export interface ClusterOptions {
  servers: string[];
  nodeName: string;
  /** A NATS .creds file (JWT + nkey seed). */
  creds?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** CA for a NATS server with a private certificate; also turns TLS on. */
  ca?: string;
  prefix?: string;
  heartbeatMs?: number;
  /** How often a node asks JetStream again while it does not answer (default NAMES_RETRY_MS). */
  retryMs?: number;
  /** A node not heard for this long is declared down. */
  downAfterMs?: number;
  /** --max-message-size: frames up to about this size must fit NATS's max_payload. */
  maxMessageSize?: number;
  /** History kept in a JetStream stream for the whole cluster (--history). */
  history?: { limits: HistoryLimits; sessions: number };
  /** How this node comes to share the cluster's session secret (src/cluster/secret.ts). */
  secret: SecretOptions;
}

function readFile(path: string, flag: string): string {
  return readHostFile(path, flag);
}

export function connectionOptions(o: ClusterOptions): ConnectionOptions {
  // nats://user:password@host (or nats://token@host), as other NATS tools take them: the client wants them apart.
  const userinfo: Array<{ user: string; pass: string }> = [];
  const servers = o.servers.map((s) => {
    try {
      const url = new URL(s.includes("://") ? s : `nats://${s}`);
      if (url.username)
        userinfo.push({ user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) });
      return `${url.protocol}//${url.host}`;
    } catch {
      return s;
    }
  });
  const opts: ConnectionOptions = {
    servers,
    name: `sova-relay ${o.nodeName}`,
    noEcho: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    // A paused or vanished server is noticed in about two seconds, not the default four minutes.
    pingInterval: 1000,
    maxPingOut: 2,
    timeout: 2000,
  };
  if (o.creds) opts.authenticator = credsAuthenticator(new TextEncoder().encode(readFile(o.creds, "--cluster-creds")));
  if (o.user) {
    opts.user = o.user;
    opts.pass = o.pass ?? "";
  }
  if (o.token) opts.token = o.token;
  const fromUrl = userinfo[0];
  if (fromUrl && !o.user && !o.token && !o.creds) {
    if (fromUrl.pass) {
      opts.user = fromUrl.user;
      opts.pass = fromUrl.pass;
    } else opts.token = fromUrl.user;
  }
  if (o.ca) opts.tls = { ca: readFile(o.ca, "--cluster-ca") };
  else if (servers.some((s) => s.startsWith("tls://"))) opts.tls = {};
  return opts;
}

/** Servers as the log may show them: no user:password@. */
export function safeServers(servers: string[]): string {
  return servers.map((s) => s.replace(/\/\/[^@/]*@/, "//")).join(", ");
}
