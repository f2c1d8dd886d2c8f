/**
 * Instance names unique across the cluster: a JetStream KV `create` on
 * session+name has one winner, whichever node asks first. Claims are kept in
 * memory storage (a restarted NATS loses them and every node claims its names
 * again when it reconnects), and a claim whose owner node is not alive is taken
 * over, so a node that died alone leaves no name behind.
 */
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { withTimeout } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import type { ClaimResult } from "../core/link.ts";
import type { NameKey } from "../core/names.ts";
import { openBucket } from "./kv-bucket.ts";

export const NAMES_BUCKET = "sova_relay_names";
/** While JetStream is unavailable, how often a node asks again. */
export const NAMES_RETRY_MS = 10_000;

interface Owner {
  n: string;
  e: number;
}

export interface ClaimsContext {
  node: string;
  epoch: number;
  /** Whether `node` at `epoch` has been heard within the down timeout. */
  alive(node: string, epoch: number): boolean;
  /** True once this node has listened long enough to know who is alive. */
  mature(): boolean;
  /** Milliseconds until mature() turns true. */
  untilMature(): number;
}

export interface Claims {
  /** Bucket to use, or null while NATS (or JetStream) is unavailable. */
  kv: KV | null;
  /**
   * Opens the names bucket on a (re)connection; true once names are claimed through it. `quiet`: a retry, which
   * warns only if the last attempt did not.
   */
  open(conn: NatsConnection, connected: () => boolean, quiet?: boolean): Promise<boolean>;
  /**
   * Claims and releases are keyed as the core compares names (core/names.ts), never by the raw name. `takeOver`:
   * the claim becomes this node's whoever holds it (a resumption proved the name is its member's).
   */
  claim(session: string, key: NameKey, takeOver?: boolean): Promise<ClaimResult>;
  /** True when this node held the claim (a registration gave it back, or its instance left). */
  release(session: string, key: NameKey): boolean;
  /** After a reconnect or a node coming back: claim every name this node holds again. */
  reclaimAll(): Promise<void>;
  /** A node was declared down: free the claims it held. */
  freeNode(node: string, epoch: number, keys: Iterable<[string, NameKey]>): void;
  readonly conflicts: number;
  readonly held: number;
}

const CLAIM_TIMEOUT_MS = 2000;

/** KV keys allow [-/_=.a-zA-Z0-9]: names are any text, so they go in as base64url. */
export function claimKey(session: string, key: NameKey): string {
  return `${session}.${Buffer.from(key, "utf8").toString("base64url") || "_"}`;
}

function owner(value: Uint8Array | undefined): Owner | null {
  try {
    const o = JSON.parse(new TextDecoder().decode(value)) as Owner;
    return typeof o.n === "string" && typeof o.e === "number" ? o : null;
  } catch {
    return null;
  }
}

export function createClaims(ctx: ClaimsContext, log: Logger): Claims {
  /** key -> KV revision of our claim; 0: held locally, not yet written (cluster unreachable). */
  const mine = new Map<string, number>();
  const value = new TextEncoder().encode(JSON.stringify({ n: ctx.node, e: ctx.epoch } satisfies Owner));
  let conflicts = 0;
  let localWarned = false;

  /** A KV revision when the claim is ours, "taken", or null when the cluster could not answer. */
  async function tryClaim(kv: KV, key: string, takeOver = false): Promise<number | "taken" | null> {
    try {
      return await withTimeout(kv.create(key, value), CLAIM_TIMEOUT_MS);
    } catch (error) {
      if (!/wrong last sequence|key exists|10071/i.test((error as Error).message)) {
        log.warn(
          "cluster_claim_failed",
          `Name claim through JetStream KV failed (${(error as Error).message});` +
            ` the name is unique on this node until it is claimed again`,
          {
            reason: (error as Error).message,
          },
        );
        return null;
      }
    }
    for (;;) {
      const entry = await withTimeout(kv.get(key), CLAIM_TIMEOUT_MS).catch(() => undefined);
      if (entry === undefined) return null;
      if (entry === null || entry.operation !== "PUT") {
        // Deleted meanwhile: try again from the start.
        return tryClaim(kv, key, takeOver);
      }
      const o = owner(entry.value);
      if (o && o.n === ctx.node && o.e === ctx.epoch) return entry.revision;
      if (o && ctx.alive(o.n, o.e) && !takeOver) return "taken";
      // Owner not heard: wait until this node has listened for a full down timeout before calling it dead.
      if (!ctx.mature() && !takeOver) {
        await Bun.sleep(ctx.untilMature());
        continue;
      }
      try {
        const revision = await withTimeout(kv.update(key, value, entry.revision), CLAIM_TIMEOUT_MS);
        const why = takeOver ? "its member resumed here" : "not alive";
        log.info("cluster_claim_taken_over", `Name claim of node ${o?.n ?? "?"} (${why}) taken over`, {
          node: o?.n,
        });
        return revision;
      } catch {
        // Someone else updated it first: look again.
      }
    }
  }

  const claims: Claims = {
    kv: null,
    async open(conn, connected, quiet = false) {
      claims.kv = null;
      // Memory storage: claims are about live connections, and a restarted NATS
      // gets them back from every node's reclaim.
      const { kv, failure } = await openBucket(conn, NAMES_BUCKET, { history: 1, storage: "memory" }, connected);
      claims.kv = kv;
      if (kv === null) {
        if (!quiet || !localWarned) {
          localWarned = true;
          const reason = failure?.message ?? "not connected";
          log.warn(
            "cluster_names_local",
            `JetStream KV unavailable (${reason}): instance names are unique per node only;` +
              ` asking again every ${NAMES_RETRY_MS / 1000} s`,
            { reason },
          );
        }
        return false;
      }
      localWarned = false;
      log.info(
        "cluster_names_shared",
        `Cluster: instance names are claimed across the cluster (JetStream KV ${NAMES_BUCKET})`,
        { node: ctx.node },
      );
      void claims.reclaimAll();
      return true;
    },
    async claim(session, name, takeOver = false) {
      const key = claimKey(session, name);
      const kv = claims.kv;
      if (kv) {
        const result = await tryClaim(kv, key, takeOver);
        if (result === "taken") return result;
        if (result !== null) {
          mine.set(key, result);
          return "ok";
        }
      }
      // Unreachable: unique on this node for now; claimed for real on reconnect.
      mine.set(key, 0);
      return "ok";
    },
    release(session, name) {
      const key = claimKey(session, name);
      const revision = mine.get(key);
      if (revision === undefined) return false;
      mine.delete(key);
      if (revision > 0 && claims.kv) void claims.kv.delete(key, { previousSeq: revision }).catch(() => {});
      return true;
    },
    async reclaimAll() {
      const kv = claims.kv;
      if (!kv) return;
      for (const key of [...mine.keys()]) {
        const result = await tryClaim(kv, key);
        if (typeof result === "number") {
          // Its instance may have left while we asked: then give the name back at once.
          if (mine.has(key)) mine.set(key, result);
          else void kv.delete(key, { previousSeq: result }).catch(() => {});
        } else if (result === "taken") {
          conflicts++;
          log.warn(
            "cluster_name_conflict",
            `A name held on this node was claimed by another node` +
              ` while the cluster was unreachable; both instances stay connected`,
            {
              session: key.split(".")[0],
            },
          );
        }
      }
    },
    freeNode(node, epoch, keys) {
      const kv = claims.kv;
      if (!kv) return;
      for (const [session, name] of keys) {
        const key = claimKey(session, name);
        void (async () => {
          const entry = await kv.get(key);
          const o = entry && entry.operation === "PUT" ? owner(entry.value) : null;
          if (o && o.n === node && o.e === epoch) await kv.delete(key, { previousSeq: entry!.revision });
        })().catch(() => {});
      }
    },
    get conflicts() {
      return conflicts;
    },
    get held() {
      return mine.size;
    },
  };
  return claims;
}
