/**
 * One session secret for the whole cluster. A session id is an HMAC of its token
 * under this secret (core/access.ts): nodes holding different secrets would put
 * one token's players into different sessions without a word.
 *
 * The first node to reach the cluster's JetStream creates the secret in a
 * file-backed KV bucket with `create` (exactly one writer wins); every other node
 * reads it. A node keeps it in its --state-dir, so a restart without NATS keeps
 * its sessions (and the history keyed by them), and a kept secret that differs from
 * the cluster's is refused rather than used. Without JetStream, --cluster-secret
 * gives every node the same one. Every announcement a node makes carries a
 * fingerprint of its secret (an HMAC of a constant under it, which says nothing
 * about it), so nodes that came to different secrets, whatever the way, notice each other.
 *
 * NATS credentials give access to the secret, as they give access to every frame.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { RelayError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { SESSION_SECRET_BYTES } from "../core/access.ts";
import { answered, jetStreamMissing, openBucket } from "./kv-bucket.ts";

export const CLUSTER_BUCKET = "sova_relay_cluster";
export const SECRET_KEY = "session_secret";

export interface SecretOptions {
  /** --cluster-secret, through givenSecret(). */
  given?: Uint8Array;
  /** What this node agreed on before, kept in its --state-dir. */
  remembered?: Uint8Array;
  /** Where `remembered` is kept, for the line that says what to do when it differs. */
  keptIn?: string;
  /** Token sessions depend on the secret: a node with tokens never runs on one the cluster does not share. */
  tokens: boolean;
  /** Keeps the agreed secret in --state-dir; throws a RelayError when it cannot. */
  remember?(secret: Uint8Array): void;
}

/**
 * "agreed": the cluster's (read from or written to its KV); "given": --cluster-secret with no JetStream to check it
 * against (the fingerprints still are); "unchecked": NATS or JetStream not reached yet; "own": a node without tokens
 * that started before NATS on a secret of its own, which differs from the cluster's (it joins: its open session is
 * named alike everywhere); "refused": it differs from the cluster's, and the node stays out.
 */
export type SecretState = "agreed" | "given" | "unchecked" | "own" | "refused";

export type PeerSecret = "same" | "different" | "unsaid";

export interface SecretAgreement {
  /** Settles once the node may admit registrations: with the secret, or with the RelayError that stops start-up. */
  readonly ready: Promise<Uint8Array>;
  readonly state: SecretState;
  /** The secret in use (null until `ready`): the one this node's core keys session ids with. */
  readonly secret: Uint8Array | null;
  /** Sent with every announcement; "" until `ready`. */
  readonly fingerprint: string;
  /** Token sessions depend on the secret (a node whose secret differs is kept out, not just reported). */
  readonly strict: boolean;
  /** The first attempt to reach NATS failed: go on with this node's own secret where that splits no ensemble. */
  unreachable(): void;
  /** On each connection, before the node joins: true to join, false when it must stay out. */
  check(conn: NatsConnection, wanted: () => boolean): Promise<boolean>;
  /** How another node's fingerprint compares (unsaid: a relay from before fingerprints, or not a relay). */
  peer(fingerprint: unknown): PeerSecret;
  /** The node closes before agreeing: start-up ends. */
  abandon(): void;
}

/** --cluster-secret as bytes: the same text on every node gives the same secret. */
export function givenSecret(text: string): Uint8Array {
  return createHash("sha256").update(`sova-relay cluster secret:${text}`, "utf8").digest();
}

export function fingerprintOf(secret: Uint8Array): string {
  return createHmac("sha256", secret).update("sova-relay cluster fingerprint", "utf8").digest("base64url").slice(0, 16);
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const WAITING = "to learn the cluster's session secret; instances are not accepted until then";
/** Attempts, 0.5 s apart, before "JetStream is not enabled" is believed at start-up (a server may be starting). */
const MISSING_ATTEMPTS = 4;

type Lookup = { secret: Uint8Array; created: boolean } | { secret: null; failure: Error; foreign?: true };

/** The cluster's secret, created as `proposal` when it has none. */
async function lookUp(conn: NatsConnection, proposal: Uint8Array, wanted: () => boolean): Promise<Lookup> {
  const { kv, failure } = await openBucket(conn, CLUSTER_BUCKET, { history: 1, storage: "file" }, wanted);
  if (!kv) return { secret: null, failure: failure! };
  try {
    await answered(kv.create(SECRET_KEY, hex(proposal)));
    return { secret: proposal, created: true };
  } catch (error) {
    if (!/wrong last sequence|key exists|10071/i.test((error as Error).message))
      return { secret: null, failure: error as Error };
  }
  try {
    const text = (await answered(kv.get(SECRET_KEY)))?.string().trim() ?? "";
    if (/^[0-9a-f]{64}$/.test(text)) return { secret: Buffer.from(text, "hex"), created: false };
    const why = `key ${SECRET_KEY} of JetStream KV ${CLUSTER_BUCKET} holds no secret a relay wrote (64 hex digits)`;
    return { secret: null, failure: new Error(why), foreign: true };
  } catch (error) {
    return { secret: null, failure: error as Error };
  }
}

/** Why a node whose own secret differs from the cluster's stays out, and what the host does about it. */
function mismatch(options: SecretOptions): string {
  const kept = options.keptIn ?? "--state-dir";
  const [source, remedy] = options.given
    ? ["--cluster-secret", "give every node the same --cluster-secret"]
    : [`the session secret kept in ${kept}`, "move that file away to take the cluster's"];
  return (
    `${source} differs from the one this cluster agreed on (JetStream KV ${CLUSTER_BUCKET}), so players with` +
    ` one token would be split between sessions; ${remedy}`
  );
}

type Verdict = { use: Uint8Array; as: SecretState; why: string } | { refuse: string } | "wait";

/**
 * At start-up, JetStream did not answer: what the node starts on. Given a secret, or without tokens, it starts; with
 * tokens and no JetStream at all it refuses (a configuration to fix); with tokens and a JetStream that is slow, it
 * starts on the secret it kept, or waits.
 */
function withoutJetStream(options: SecretOptions, failure: Error, attempt: number, proposal: Uint8Array): Verdict {
  const why = `JetStream unavailable (${failure.message})`;
  if (options.given) return { use: options.given, as: "given", why: `${why}: using --cluster-secret` };
  if (!options.tokens) return { use: proposal, as: "unchecked", why: `${why}: session secret not shared` };
  const missing = jetStreamMissing(failure);
  if (missing && attempt >= MISSING_ATTEMPTS) {
    return {
      refuse:
        "JetStream is not enabled on the NATS server: nodes with --token agree on their session secret through" +
        " it; start nats-server with JetStream (-js), or give every node the same --cluster-secret",
    };
  }
  if (!missing && options.remembered)
    return { use: options.remembered, as: "unchecked", why: `${why}: using the one --state-dir kept` };
  return "wait";
}

/** The secret in use, and start-up's promise of it: settled once, by the first secret used or the first refusal. */
function secretHolder(log: Logger) {
  const { promise: ready, resolve, reject } = Promise.withResolvers<Uint8Array>();
  // Start-up awaits it; a rejection nobody awaited yet must not be reported as unhandled.
  ready.catch(() => {});
  let current: Uint8Array | null = null;
  let fingerprint = "";
  let state: SecretState = "unchecked";
  let settled = false;
  return {
    ready,
    get current() {
      return current;
    },
    get fingerprint() {
      return fingerprint;
    },
    get state() {
      return state;
    },
    get settled() {
      return settled;
    },
    use(secret: Uint8Array, as: SecretState): void {
      current = secret;
      fingerprint = fingerprintOf(secret);
      state = as;
      if (!settled) {
        settled = true;
        resolve(secret);
      }
    },
    /** Before start-up is over: the line start-up ends with (exit 2). After: an error line, and the node stays out. */
    refuse(why: string): false {
      state = "refused";
      if (!settled) {
        settled = true;
        reject(new RelayError("E_CONFIG", why));
      } else log.error("cluster_secret_mismatch", `Cluster: not joining: ${why}`, { reason: why });
      return false;
    },
    abandon(): void {
      if (settled) return;
      settled = true;
      reject(new RelayError("E_STARTUP", "stopped before the cluster's session secret was agreed"));
    },
  };
}

export function createSecretAgreement(options: SecretOptions, log: Logger): SecretAgreement {
  const held = secretHolder(log);
  const said = new Set<string>();
  // Checked at once: a --cluster-secret that is not the one this node kept would change every session id.
  if (options.given && options.remembered && !same(options.given, options.remembered)) {
    held.refuse(
      `--cluster-secret is not the session secret kept in ${options.keptIn ?? "--state-dir"}: session ids would` +
        ` change; move that file away to use --cluster-secret`,
    );
  }

  /** True the first time for `what`: some lines are said once per node start. */
  function first(what: string): boolean {
    if (said.has(what)) return false;
    said.add(what);
    return true;
  }

  function remember(secret: Uint8Array): void {
    if (!options.remember || options.remembered) return;
    options.remember(secret);
    options.remembered = secret;
  }

  /** This node's secret against the cluster's. */
  function agreeOn(cluster: Uint8Array, created: boolean): boolean {
    const mine = held.current ?? options.given ?? options.remembered ?? null;
    if (mine && !same(mine, cluster)) {
      if (held.current && !options.tokens && !options.given && !options.remembered) {
        // Started before NATS with a secret of its own and no tokens: no session of this node's is keyed by it.
        held.use(held.current, "own");
        if (first("own"))
          log.warn(
            "cluster_secret_unchecked",
            "Cluster: this node started before NATS with a session secret of its own; it has no token sessions," +
              " so it joins, but restart it to take the cluster's",
          );
        return true;
      }
      return held.refuse(mismatch(options));
    }
    try {
      remember(cluster);
    } catch (error) {
      if (!held.settled) return held.refuse((error as Error).message);
      log.error("cluster_secret_unkept", `Cluster: ${(error as Error).message}`, { reason: (error as Error).message });
    }
    held.use(cluster, "agreed");
    log.info(
      "cluster_secret_agreed",
      `Cluster: session secret ${created ? "created in" : "read from"} JetStream KV ${CLUSTER_BUCKET}`,
      { created },
    );
    return true;
  }

  function goOn(secret: Uint8Array, as: SecretState, why: string): true {
    held.use(secret, as);
    log.warn("cluster_secret_unchecked", `Cluster: ${why}`, { reason: why });
    return true;
  }

  /** JetStream did not answer: true/false to end the check, null to ask again. */
  function unanswered(failure: Error, attempt: number, proposal: Uint8Array): boolean | null {
    // Running already: stay on what it has; heartbeats' fingerprints still tell a node with another secret.
    if (held.settled) return true;
    const verdict = withoutJetStream(options, failure, attempt, proposal);
    if (verdict !== "wait")
      return "refuse" in verdict ? held.refuse(verdict.refuse) : goOn(verdict.use, verdict.as, verdict.why);
    if (first("waiting"))
      log.warn("cluster_secret_waiting", `Cluster: waiting for JetStream (${failure.message}) ${WAITING}`, {});
    return null;
  }

  return {
    ready: held.ready,
    get state() {
      return held.state;
    },
    get secret() {
      return held.current;
    },
    get fingerprint() {
      return held.fingerprint;
    },
    strict: options.tokens,
    unreachable() {
      if (held.settled) return;
      const kept = options.given ?? options.remembered;
      if (kept) return void goOn(kept, "unchecked", "NATS unreachable: using this node's session secret until it is");
      // A node with no tokens and nothing kept: a secret of its own now, checked when NATS comes.
      if (!options.tokens) return held.use(randomBytes(SESSION_SECRET_BYTES), "unchecked");
      if (first("waiting")) log.warn("cluster_secret_waiting", `Cluster: waiting for NATS ${WAITING}`, {});
    },
    async check(conn, wanted) {
      if (held.state === "refused") return false;
      const proposal = held.current ?? options.given ?? options.remembered ?? randomBytes(SESSION_SECRET_BYTES);
      for (let attempt = 1; wanted(); attempt++) {
        const found = await lookUp(conn, proposal, wanted);
        if (found.secret) return agreeOn(found.secret, found.created);
        if (found.foreign) return held.refuse(found.failure.message);
        const done = unanswered(found.failure, attempt, proposal);
        if (done !== null) return done;
        await Bun.sleep(jetStreamMissing(found.failure) ? 500 : 1000);
      }
      return false;
    },
    peer(k) {
      if (typeof k !== "string") return "unsaid";
      return k === held.fingerprint ? "same" : "different";
    },
    abandon: held.abandon,
  };
}
