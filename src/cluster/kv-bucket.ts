/**
 * Opening a JetStream KV bucket the way every node does it: the cluster's name
 * claims (claims.ts) and its session secret (secret.ts) each live in one.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { withTimeout } from "../lib/deadline.ts";

/** JetStream calls wait up to 5 s by default; a node should not hold registrations that long. */
export function answered<T>(p: Promise<T>, ms = 2000): Promise<T> {
  return withTimeout(p, ms);
}

/** JetStream is not there at all (not enabled on the server, or no server answers its API), as opposed to slow. */
export function jetStreamMissing(error: Error | null): boolean {
  return error !== null && /no responders|not enabled|503/i.test(error.message);
}

export interface OpenedBucket {
  kv: KV | null;
  /** Why `kv` is null. */
  failure: Error | null;
}

/**
 * Creates the bucket, or opens it when it exists. Nodes starting together race to
 * create it: one may fail while another creates it, so a failure is followed by an
 * open, a few times. `wanted` turning false (NATS gone, node closing) ends the tries.
 */
export async function openBucket(
  conn: NatsConnection,
  name: string,
  config: Partial<KvOptions>,
  wanted: () => boolean,
): Promise<OpenedBucket> {
  let failure: Error | null = null;
  for (let attempt = 0; attempt < 5 && wanted(); attempt++) {
    const kvm = new Kvm(conn);
    try {
      const kv = await answered(kvm.create(name, config));
      // Creating can succeed without JetStream answering; asking the bucket's status cannot.
      await answered(kv.status());
      return { kv, failure: null };
    } catch (error) {
      failure = error as Error;
      if (jetStreamMissing(failure)) break;
      const kv = await answered(kvm.open(name)).catch(() => null);
      const ok =
        kv &&
        (await answered(kv.status()).then(
          () => true,
          () => false,
        ));
      if (kv && ok) return { kv, failure: null };
      await Bun.sleep(200);
    }
  }
  return { kv: null, failure: failure ?? new Error("not connected") };
}
