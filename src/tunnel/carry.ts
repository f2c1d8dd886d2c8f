/**
 * One Sova connection carried to the relay. Sova's first frame, its
 * RegisterInstance, goes up asking for resumption too; from then on the
 * relay's frames for the tunnel alone (Resumable, Mark, Acked) stay here and
 * everything else reaches Sova unchanged. When the connection to the relay is
 * lost, Sova's stays open: it is nudged as the relay would, its edits are held,
 * and the session is resumed through the addresses of --to in turn; the held
 * edits then go, in order, none twice. When that cannot be done (the relay
 * refuses, the grace window passes, the held edits pass their bound), Sova is
 * told `Error "Connection lost"`, the one frame that makes it show the player
 * disconnected.
 */
import type { Logger } from "../lib/log.ts";
import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  peekVariant,
  type RegisterInstance,
  type Variant,
} from "../protocol/messages.ts";
import { decodeMark } from "../protocol/fast-mark.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";
import { createRotation, type Backoff, type Rotation } from "./failover.ts";
import type { LocalEvents, LocalSide } from "./local.ts";
import { createResumeState, createSeenMembers, type ResumeState } from "./resume.ts";
import { describeFailure, type TunnelTarget } from "./target.ts";
import { UP_HIGH_WATER, type Upstream, type UpstreamEvents, withLength } from "./upstream.ts";

/** Past this much waiting for Sova, the relay is not read until it empties. */
const LOCAL_HIGH_WATER = 256 * 1024;
/** How often the tunnel's one timer looks at each connection: liveness, acknowledgements, nudges. */
export const TICK_MS = 20;
/** Acknowledgements to the relay go at most this often. */
const ACK_MS = 500;
/** A relay silent this long is asked for a Pong (it nudges every 40 ms by default, so this is rare). */
const PING_AFTER_MS = 1000;
/**
 * Sent nothing for this long, the tunnel sends an Ack anyway: the relay takes a member that may resume and says
 * nothing for 6 s for gone (a half-open connection), and parks it, so its grace window runs on both sides.
 */
const KEEPALIVE_MS = 2000;
/** While resuming, Sova is sent a Pong when it was sent nothing for this long: its waiting edit can leave. */
const NUDGE_MS = 40;
/** An attempt not connected after this gets company: a dropped SYN waits a second for its retry. */
const STALL_MS = 1000;
const MAX_ATTEMPTS_AT_ONCE = 3;

export interface CarryOptions {
  targets: readonly TunnelTarget[];
  /** Ask the relay for resumption (off: a plain pipe, as before resumption). */
  resume: boolean;
  /** Bytes of Sova's edits held unconfirmed (sent, or made while resuming). */
  maxHeldBytes: number;
  /** A relay that said nothing for this long is taken for gone, and the session resumed. */
  upstreamTimeoutMs: number;
  backoff?: Backoff;
  /** Whether --ca was given (failure lines point at it). */
  hasCa: boolean;
}

export interface CarryContext {
  readonly options: CarryOptions;
  readonly log: Logger;
  open(target: TunnelTarget, events: UpstreamEvents): Upstream;
  /** One line for a failure to reach the relay, folded when Sova retries. */
  failed(connection: number, target: TunnelTarget, code: string | undefined, message: string): void;
  /** Carriers alive, for the tunnel's totals. */
  readonly carriers: Set<Carrier>;
}

type Phase = "connecting" | "live" | "resuming" | "done";

export class Carrier implements LocalEvents {
  phase: Phase = "connecting";
  readonly state: ResumeState;
  private up: Upstream | null = null;
  private readonly attempts = new Set<Upstream>();
  /** The attempt whose ResumeInstance went out, until it is answered. */
  private asking: Upstream | null = null;
  private readonly rotation: Rotation;
  private registration: RegisterInstance | null = null;
  private readonly members = createSeenMembers();
  /** Sova asked for presence itself (the tunnel always does, to follow joins). */
  private presence = false;
  private sentFirst = false;
  private id: Uint8Array | null = null;
  private lastHeard = Date.now();
  private lastAck = 0;
  private lastUp = Date.now();
  /** The relay is not read while Sova is behind. */
  private paused = false;
  private pinged = false;
  private gapStart = 0;
  private retry: Timer | null = null;
  gaps = 0;

  constructor(
    private readonly ctx: CarryContext,
    private readonly local: LocalSide,
  ) {
    this.state = createResumeState(ctx.options.maxHeldBytes);
    this.rotation = createRotation(ctx.options.targets, ctx.options.backoff);
    ctx.carriers.add(this);
    this.connectFirst(0);
  }

  private get name(): string {
    return `Connection ${this.local.id}`;
  }

  /** The first connection: each address once, in order; none reachable, the local connection ends. */
  private connectFirst(index: number): void {
    const target = this.ctx.options.targets[index]!;
    const up: Upstream = this.ctx.open(target, {
      open: () => this.opened(up),
      frame: (body) => this.fromRelay(up, body),
      failed: (code, message) => {
        if (this.phase !== "connecting") return;
        this.ctx.failed(this.local.id, target, code, message);
        if (index + 1 < this.ctx.options.targets.length) this.connectFirst(index + 1);
        else this.end(false);
      },
      closed: (why) => this.lost(up, why),
      writable: () => this.writable(up),
    });
    this.up = up;
  }

  private opened(up: Upstream): void {
    if (this.phase !== "connecting") return up.close();
    this.phase = "live";
    this.lastHeard = Date.now();
    this.rotation.worked(up.target);
    this.ctx.log.info("tunnel_open", `${this.name}: carried to ${up.target.shown}`, {
      connection: this.local.id,
      target: up.target.shown,
    });
    this.local.resume();
  }

  // LocalEvents: what Sova does.
  frame(body: Uint8Array): void {
    if (this.phase === "done") return;
    if (!this.sentFirst) return this.register(body);
    const edit = this.state.enabled && peekVariant(body) === "StateUpdate";
    if (this.phase === "live" && this.up !== null) {
      if (!edit) return this.sendUp(body);
      if (!this.state.hold(body)) return this.fail(this.holdFull());
      for (const b of this.state.unsent()) this.sendUp(b);
      return;
    }
    if (edit) {
      if (!this.state.hold(body)) this.fail(this.holdFull());
    } else if (peekVariant(body) === "Ping") {
      // The relay would answer; while it cannot, the tunnel does.
      const ping = decodeMessage(body) as Variant<"Ping">;
      this.local.write(encodeFrame({ type: "Pong", timestamp: ping.timestamp }));
    }
  }

  closed(): void {
    this.ctx.log.info(
      "tunnel_closed",
      `${this.name} closed (${this.local.bytesUp} bytes up, ${this.local.bytesDown} down)`,
      { connection: this.local.id, bytes_up: this.local.bytesUp, bytes_down: this.local.bytesDown },
    );
    if (this.phase === "done") return;
    const up = this.up;
    this.up = null;
    this.stop();
    // The player left: the relay ends the member now instead of keeping it for a grace window.
    if (up !== null && this.state.enabled) up.send(encodeMessage({ type: "Leave", reason: "the player closed Sova" }));
    up?.close();
  }

  loneHeader(): void {
    // As the relay answers a registered instance: a Pong with the time, which Sova ignores but its kernel ACKs.
    if (this.id !== null && this.phase !== "done") this.nudge(Date.now());
  }

  /** The tunnel itself stops: the relay is told the player left, Sova that the connection is lost. */
  shutdown(): void {
    if (this.phase === "done") return;
    const up = this.up;
    this.up = null;
    if (up !== null && this.state.enabled) up.send(encodeMessage({ type: "Leave", reason: "the tunnel stopped" }));
    up?.close();
    this.closing("the tunnel is stopping");
    this.end(true);
  }

  drained(): void {
    if (!this.paused) return;
    this.paused = false;
    // Silence while the relay was not read says nothing about the relay.
    this.lastHeard = Date.now();
    this.up?.resume();
  }

  /** Sova's RegisterInstance, with "resume" asked for first (the relay reads only the first few capabilities). */
  private register(body: Uint8Array): void {
    this.sentFirst = true;
    if (peekVariant(body) === "RegisterInstance") {
      try {
        const msg = decodeMessage(body) as RegisterInstance;
        this.registration = msg;
        this.presence = msg.capabilities.includes("presence");
        const asked = ["resume", "presence"].filter((c) => !msg.capabilities.includes(c));
        if (this.ctx.options.resume && asked.length > 0)
          body = encodeMessage({ ...msg, capabilities: [...asked, ...msg.capabilities] });
      } catch {
        // Not ours to judge: the relay answers it.
      }
    }
    this.sendUp(body);
  }

  private sendUp(body: Uint8Array): void {
    const up = this.up!;
    this.lastUp = Date.now();
    up.send(body);
    if (up.backlog > UP_HIGH_WATER) this.local.pause();
  }

  private writable(up: Upstream): void {
    if (up === this.up && this.phase !== "done") this.local.resume();
  }

  private toSova(body: Uint8Array): void {
    this.local.write(withLength(body));
    if (this.local.pendingBytes > LOCAL_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.up?.pause();
    }
  }

  /** A frame from the live connection: the tunnel's own stay here, the rest go to Sova as they came. */
  private fromRelay(up: Upstream, body: Uint8Array): void {
    if (up !== this.up || this.phase === "done") return this.answer(up, body);
    this.lastHeard = Date.now();
    this.pinged = false;
    const variant = peekVariant(body);
    switch (variant) {
      case "StateBroadcast":
        this.toSova(body);
        return this.state.passedOn();
      case "Mark":
        return this.state.mark(decodeMark(body) ?? (decodeMessage(body, { extensions: true }) as Variant<"Mark">));
      case "Acked":
        return this.state.acknowledged(decodeMessage(body, { extensions: true }) as Variant<"Acked">);
      case "Resumable":
        return this.resumable(decodeMessage(body, { extensions: true }) as Variant<"Resumable">);
      case "RegistrationResponse":
        this.registered(body);
        return this.toSova(body);
      case "InstanceConnected":
      case "InstanceDisconnected":
        this.members.note(decodeMessage(body, { extensions: true }));
        if (variant === "InstanceConnected" && !this.presence) return;
        return this.toSova(body);
      case "Error":
        this.toSova(body);
        // The relay ended the session itself: final, as for Sova connected directly.
        if (this.isConnectionLost(body)) {
          this.closing("the relay ended the session");
          this.end(false);
        }
        return;
      default:
        return this.toSova(body);
    }
  }

  private isConnectionLost(body: Uint8Array): boolean {
    const msg = decodeMessage(body);
    return msg.type === "Error" && msg.message === WIRE_ERRORS.connectionLost();
  }

  private registered(body: Uint8Array): void {
    const msg = decodeMessage(body);
    if (msg.type !== "RegistrationResponse" || !msg.success) return;
    this.id = msg.assigned_id;
    this.members.note(msg);
  }

  private resumable(msg: Variant<"Resumable">): void {
    if (!this.state.resumable(msg, true)) return;
    this.ctx.log.info(
      "tunnel_resumable",
      `${this.name}: the relay keeps this player's session for ${Number(msg.window_ms) / 1000} s` +
        ` if the connection is lost`,
      { connection: this.local.id, window_ms: Number(msg.window_ms) },
    );
  }

  /** The live connection ended: resume when the relay agreed to, else tell Sova. */
  private lost(up: Upstream, why: string): void {
    if (up !== this.up) return this.attemptGone(up, why);
    if (this.phase !== "live") return;
    this.up = null;
    // A Sova that stopped reading is not resumed: the relay cut it for that, and would again.
    const stalled = this.local.pendingBytes > LOCAL_HIGH_WATER;
    if (!this.state.enabled || this.id === null || stalled) {
      this.closing(why);
      return this.end(true);
    }
    this.phase = "resuming";
    this.gaps++;
    this.gapStart = Date.now();
    this.state.lost();
    this.rotation.restart();
    this.local.resume();
    this.ctx.log.warn(
      "tunnel_gap",
      `${this.name}: ${why}; Sova's connection stays open, resuming` + ` (for up to ${this.state.windowMs / 1000} s)`,
      { connection: this.local.id, reason: why },
    );
    this.nextAttempt();
  }

  private nextAttempt(): void {
    if (this.phase !== "resuming" || this.retry !== null || this.attempts.size >= MAX_ATTEMPTS_AT_ONCE) return;
    const attempt = this.rotation.next();
    this.retry = setTimeout(() => {
      this.retry = null;
      this.attempt(attempt.target, attempt.number, attempt.delayMs);
    }, attempt.delayMs);
  }

  /** One try at resuming, announced in one line; it may overlap a slower one. */
  private attempt(target: TunnelTarget, number: number, delayMs: number): void {
    if (this.phase !== "resuming") return;
    const since = ((Date.now() - this.gapStart) / 1000).toFixed(1);
    this.ctx.log.info(
      "tunnel_attempt",
      `${this.name}: resuming through ${target.shown} (attempt ${number}, ${since} s into the gap,` +
        ` after waiting ${delayMs} ms)`,
      { connection: this.local.id, target: target.shown, attempt: number, delay_ms: delayMs },
    );
    let connected = false;
    const stall = setTimeout(() => !connected && this.nextAttempt(), STALL_MS);
    const up: Upstream = this.ctx.open(target, {
      open: () => {
        connected = true;
        clearTimeout(stall);
        // One request at a time: a second one would take the member over from the first.
        if (this.phase !== "resuming" || this.registration === null || this.asking !== null) return up.close();
        this.asking = up;
        up.send(this.state.request(this.registration, this.id!));
      },
      frame: (body) => this.fromRelay(up, body),
      failed: (code, message) => {
        clearTimeout(stall);
        this.attemptGone(up, describeFailure(target, code, message, this.ctx.options.hasCa).text);
      },
      closed: (why) => {
        clearTimeout(stall);
        this.lost(up, why);
      },
      writable: () => this.writable(up),
    });
    this.attempts.add(up);
  }

  private attemptGone(up: Upstream, why: string): void {
    if (!this.attempts.delete(up)) return;
    if (this.asking === up) this.asking = null;
    this.ctx.log.debug("tunnel_upstream_failed", `${this.name}: attempt through ${up.target.shown}: ${why}`, {
      connection: this.local.id,
      target: up.target.shown,
    });
    if (this.attempts.size === 0) this.nextAttempt();
  }

  /** A frame on an attempt: the relay's answer to the ResumeInstance. */
  /** A frame on the attempt that asked: the gap (marked broadcasts), then Resumable; or one Error. */
  private answer(up: Upstream, body: Uint8Array): void {
    if (up !== this.asking || this.phase !== "resuming") return;
    const mark = decodeMark(body);
    if (mark !== null) return this.state.mark(mark);
    const msg = decodeMessage(body, { extensions: true });
    if (msg.type === "Mark") return this.state.mark(msg);
    if (msg.type === "StateBroadcast") {
      this.local.write(withLength(body));
      return this.state.passedOn();
    }
    if (msg.type === "Error") return this.fail(`the relay refused to resume (${msg.message})`);
    if (msg.type === "Resumable") this.resumed(up, msg);
  }

  /** The gap is filled: what Sova missed of the others' comings and goings, then the held edits, in order. */
  private resumed(up: Upstream, msg: Variant<"Resumable">): void {
    if (!this.state.resumable(msg, false)) return this.fail("the relay's count of this player's edits is not ours");
    this.asking = null;
    this.attempts.delete(up);
    for (const other of this.attempts) other.close();
    this.attempts.clear();
    this.up = up;
    this.phase = "live";
    this.lastHeard = Date.now();
    this.rotation.worked(up.target);
    for (const notice of this.members.catchUp(msg.members, this.presence)) this.local.write(notice);
    const resent = this.state.unsent();
    for (const b of resent) this.sendUp(b);
    const gapMs = Date.now() - this.gapStart;
    this.ctx.log.info(
      "tunnel_resumed",
      `${this.name}: resumed through ${up.target.shown} after ${(gapMs / 1000).toFixed(2)} s;` +
        ` ${resent.length} edits sent again or held (${this.state.heldBytes} bytes)`,
      {
        connection: this.local.id,
        target: up.target.shown,
        gap_ms: gapMs,
        resent: resent.length,
        held_bytes: this.state.heldBytes,
      },
    );
  }

  private holdFull(): string {
    return `more than ${this.ctx.options.maxHeldBytes} bytes of edits waiting for the relay`;
  }

  /** The session cannot be kept: Sova hears the truth. */
  private fail(reason: string): void {
    if (this.phase === "done") return;
    this.ctx.log.error("tunnel_resume_failed", `${this.name}: ${reason}; telling Sova the connection is lost`, {
      connection: this.local.id,
      reason,
    });
    this.end(true);
  }

  private closing(why: string): void {
    this.ctx.log.info("tunnel_upstream_closed", `${this.name}: ${why}; closing the local connection`, {
      connection: this.local.id,
      reason: why,
    });
  }

  /** Sova's connection closes after what is queued; `tell`: with "Connection lost" last, when Sova registered. */
  private end(tell: boolean): void {
    if (this.phase === "done") return;
    const up = this.up;
    this.up = null;
    this.stop();
    // Still connected: the relay ends the member now rather than keep it for a window nobody will use.
    if (up !== null && this.state.enabled) {
      up.send(encodeMessage({ type: "Leave", reason: "the tunnel gave up" }));
      up.close();
    } else up?.terminate();
    if (tell && this.id !== null)
      this.local.write(encodeFrame({ type: "Error", message: WIRE_ERRORS.connectionLost() }));
    this.local.end();
  }

  private stop(): void {
    this.phase = "done";
    if (this.retry) clearTimeout(this.retry);
    for (const a of this.attempts) a.terminate();
    this.attempts.clear();
    this.asking = null;
    this.ctx.carriers.delete(this);
  }

  /** What the relay sends a quiet instance: Sova's edit waiting for its lock can leave (docs/resume.md). */
  private nudge(now: number): void {
    this.local.write(encodeFrame({ type: "Pong", timestamp: BigInt(now) }));
  }

  /** Called every TICK_MS by the tunnel. */
  tick(now: number): void {
    if (this.phase === "resuming") {
      if (now - this.gapStart > this.state.windowMs) return this.fail("not resumed within the grace window");
      if (now - this.local.lastWrite >= NUDGE_MS) this.nudge(now);
      return;
    }
    const up = this.up;
    if (this.phase !== "live" || up === null || !this.state.enabled) return;
    // While the relay is not read (Sova behind), its silence says nothing; the tunnel still says it is alive.
    const silent = this.paused ? 0 : now - this.lastHeard;
    if (silent > this.ctx.options.upstreamTimeoutMs) {
      up.terminate();
      return this.lost(up, `no word from the relay for ${(silent / 1000).toFixed(1)} s`);
    }
    if (silent > PING_AFTER_MS && !this.pinged) {
      this.pinged = true;
      this.sendUp(encodeMessage({ type: "Ping", timestamp: BigInt(now) }));
    }
    if (now - this.lastAck >= ACK_MS) {
      this.lastAck = now;
      const ack = this.state.ackDue(now - this.lastUp >= KEEPALIVE_MS);
      if (ack) this.sendUp(ack);
    }
  }
}
