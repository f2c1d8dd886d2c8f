/**
 * The tunnel's side of resumption without sockets: which address and when
 * (failover.ts), what it keeps to resume (resume.ts: held edits, cursor, the
 * relay's count), and who Sova was told is in the session.
 */
import { describe, expect, test } from "bun:test";
import { decodeMessage, encodeMessage, type RegisterInstance, type Variant } from "../../../src/protocol/messages.ts";
import { createRotation } from "../../../src/tunnel/failover.ts";
import { createResumeState, createSeenMembers } from "../../../src/tunnel/resume.ts";
import { parseTargets } from "../../../src/tunnel/target.ts";

const targets = parseTargets(["tcp://a.example:9090,tcp://b.example:9090", "wss://c.example/relay"]);

function resumable(consumed: number, cursor: Array<[string, bigint]> = [["r", 5n]]): Variant<"Resumable"> {
  return {
    type: "Resumable",
    secret: new Uint8Array(32).fill(1),
    cursor,
    window_ms: 30_000n,
    generation: 0n,
    consumed: BigInt(consumed),
    members: [],
  };
}

describe("failover: which address, and when", () => {
  test("the first attempt goes at once to the last address that worked, then each in turn", () => {
    const r = createRotation(targets, { baseMs: 100, maxMs: 500, jitter: 0, random: () => 0.5 });
    r.worked(targets[1]!);
    const attempts = Array.from({ length: 7 }, () => r.next());
    expect(attempts.map((a) => a.target.host)).toEqual([
      "b.example",
      "c.example",
      "a.example",
      "b.example",
      "c.example",
      "a.example",
      "b.example",
    ]);
    // A round of addresses per step, doubling up to the cap.
    expect(attempts.map((a) => a.delayMs)).toEqual([0, 100, 100, 100, 200, 200, 200]);
    r.restart();
    expect(r.next()).toMatchObject({ delayMs: 0, number: 1 });
  });

  test("the waits are capped low and jittered: tunnels that lost one node do not all knock at once", () => {
    let seed = 1;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const r = createRotation(targets.slice(0, 1), { baseMs: 100, maxMs: 500, jitter: 0.25, random });
    const delays = Array.from({ length: 40 }, () => r.next().delayMs).slice(10);
    for (const d of delays) expect(d).toBeGreaterThanOrEqual(375);
    for (const d of delays) expect(d).toBeLessThanOrEqual(625);
    expect(new Set(delays).size).toBeGreaterThan(10);
  });
});

describe("resume state: what the tunnel keeps", () => {
  const edit = (n: number) => Uint8Array.of(n);

  test("held edits go once each: confirmed ones are dropped, the rest sent again after a resumption", () => {
    const st = createResumeState(1000);
    expect(st.resumable(resumable(0), true)).toBe(true);
    for (let i = 0; i < 4; i++) expect(st.hold(edit(i))).toBe(true);
    expect(st.unsent().map((b) => b[0])).toEqual([0, 1, 2, 3]);
    st.acknowledged({ type: "Acked", origin: "r", q: 6n });
    st.lost();
    // The relay had consumed three: the fourth goes again, alone.
    expect(st.resumable(resumable(3), false)).toBe(true);
    expect(st.unsent().map((b) => b[0])).toEqual([3]);
    expect(st.acked).toBe(3);
    // A count the tunnel cannot have is refused, not trusted.
    st.lost();
    expect(st.resumable(resumable(9), false)).toBe(false);
  });

  test("the hold is bounded in bytes", () => {
    const st = createResumeState(10);
    expect(st.hold(new Uint8Array(6))).toBe(true);
    expect(st.hold(new Uint8Array(6))).toBe(false);
    expect(st.heldBytes).toBe(6);
  });

  test("the request carries where the player stands: broadcasts passed on, and its own edits confirmed", () => {
    const st = createResumeState(1000);
    st.resumable(resumable(0, [["r", 5n]]), true);
    st.mark({ type: "Mark", origin: "r", q: 6n, n: 1n });
    st.passedOn();
    st.hold(edit(1));
    st.unsent();
    // A later broadcast arrived before the edit's acknowledgement: the cursor moves, the confirmed edits do not.
    st.mark({ type: "Mark", origin: "r", q: 8n, n: 3n });
    st.passedOn();
    const registration: RegisterInstance = {
      type: "RegisterInstance",
      instance_name: "alice",
      version: "0.1.0",
      session_token: null,
      capabilities: ["resume"],
    };
    const req = decodeMessage(st.request(registration, new Uint8Array(16)), { extensions: true });
    if (req.type !== "ResumeInstance") throw new Error(req.type);
    expect(req.cursor).toEqual([["r", 8n]]);
    expect(req.own).toEqual([["r", 6n]]);
    expect(req.acked).toBe(0n);
    expect(st.ackDue()).toEqual(encodeMessage({ type: "Ack", n: 3n }));
    expect(st.ackDue()).toBeNull();
  });

  test("after a gap Sova is told who left meanwhile, and who joined when it asked for presence", () => {
    const seen = createSeenMembers();
    const id = (n: number) => new Uint8Array(16).fill(n);
    seen.note({
      type: "RegistrationResponse",
      success: true,
      message: "Registered as me",
      assigned_id: id(9),
      current_instances: [1, 2].map((n) => ({
        id: id(n),
        name: `p${n}`,
        version: "0.1.0",
        connected_at: { secs_since_epoch: 1n, nanos_since_epoch: 0 },
        last_activity: { secs_since_epoch: 1n, nanos_since_epoch: 0 },
      })),
    });
    const notices = seen.catchUp(
      [
        [id(2), "p2"],
        [id(3), "p3"],
      ],
      true,
    );
    const msgs = notices.map((f) => decodeMessage(f.subarray(4), { extensions: true }));
    expect(msgs.map((m) => m.type)).toEqual(["InstanceDisconnected", "InstanceConnected"]);
    expect(seen.catchUp([[id(3), "p3"]], false).map((f) => decodeMessage(f.subarray(4)).type)).toEqual([
      "InstanceDisconnected",
    ]);
  });
});
