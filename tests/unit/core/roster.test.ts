import { parse as parseUuid } from "uuid";
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  encodeFrame,
  instanceInfoHead,
  systemTimeFromMillis,
  type KnownInstance,
} from "../../../src/protocol/messages.ts";
import { encodeRegistrationFrameWithEntries } from "../../support/vectors.ts";
import { createRoster, rosterEntries, rosterJoin } from "../../../src/core/roster.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

interface Member extends KnownInstance {
  lastActivity: number;
  readonly info: { id: Uint8Array; name: string; version: string; connectedMs: number };
}

function member(index: number, name: string, ms: number): Member {
  const id = parseUuid(`00000000-0000-4000-8000-${String(index).padStart(12, "0")}`);
  const info = { id, name, version: "0.1.0", connectedMs: ms };
  return {
    info,
    infoHead: instanceInfoHead({ id, name, version: info.version, connected_at: systemTimeFromMillis(ms) }),
    lastActivity: ms,
  };
}

/** What rmp-serde would get from the generic encoder for the same list. */
function generic(members: readonly Member[]): string {
  const current_instances = members.map((m) => ({
    id: m.info.id,
    name: m.info.name,
    version: m.info.version,
    connected_at: systemTimeFromMillis(m.info.connectedMs),
    last_activity: systemTimeFromMillis(m.lastActivity),
  }));
  return hex(
    encodeFrame({
      type: "RegistrationResponse",
      success: true,
      message: "Registered as x",
      assigned_id: parseUuid("00000000-0000-4000-8000-000000000000"),
      current_instances,
    }),
  );
}

const op = fc.oneof(
  fc.record({
    kind: fc.constant("join" as const),
    name: fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
    ms: fc.integer({ min: 0, max: 2 ** 42 }),
  }),
  fc.record({ kind: fc.constant("leave" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("active" as const), at: fc.nat(), ms: fc.integer({ min: 0, max: 2 ** 42 }) }),
);

describe("session roster (the cached InstanceInfo list)", () => {
  test(`after any sequence of joins, leaves and activity, \
every newcomer's list is byte-identical to the generic encoding`, () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const roster = createRoster();
        let members: readonly Member[] = [];
        let next = 1;
        for (const o of ops) {
          if (o.kind === "join") {
            // As the relay does: the newcomer gets the list of those already there, then joins it.
            const entries = rosterEntries(roster, members);
            const id = parseUuid("00000000-0000-4000-8000-000000000000");
            expect(hex(encodeRegistrationFrameWithEntries("Registered as x", id, members.length, entries))).toBe(
              generic(members),
            );
            const joined = member(next++, o.name, o.ms);
            const previous = members;
            members = [...previous, joined];
            rosterJoin(roster, previous, members, joined);
          } else if (members.length > 0) {
            const target = members[o.at % members.length]!;
            if (o.kind === "leave") members = members.filter((m) => m !== target);
            else target.lastActivity = o.ms;
          }
        }
        const id = parseUuid("00000000-0000-4000-8000-000000000000");
        expect(
          hex(
            encodeRegistrationFrameWithEntries("Registered as x", id, members.length, rosterEntries(roster, members)),
          ),
        ).toBe(generic(members));
      }),
      { numRuns: RUNS },
    );
  });

  test("a join appends to the kept bytes instead of re-encoding everyone", () => {
    const roster = createRoster();
    let members: readonly Member[] = [];
    for (let i = 0; i < 50; i++) {
      rosterEntries(roster, members);
      const joined = member(i, `m${i}`, 1_700_000_000_000 + i);
      const previous = members;
      members = [...previous, joined];
      rosterJoin(roster, previous, members, joined);
    }
    const before = roster.entries;
    rosterEntries(roster, members);
    expect(roster.entries).toBe(before);
    // Activity of one member is seen, and only then is the list rebuilt.
    (members[7] as Member).lastActivity += 1;
    rosterEntries(roster, members);
    expect(roster.entries).not.toBe(before);
  });
});
