/**
 * The decoder against Sova's own edits (tests/fixtures/sova-edits.json, made by the
 * real rmp-serde from Sova's types at 1b7deac): every case reads back to its JSON
 * value and to the edit it is, and nothing a stranger sends makes it throw.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeEdit, type Edit } from "../../../src/watch/edits.ts";
import { Float, MAX_DEPTH, readValue, type Value } from "../../../src/watch/value.ts";
import { loadSovaEdits, sovaEdit } from "../../support/sova-edits.ts";

/** A read value as JSON shows it: maps as objects (keys as own properties, `__proto__` included), floats as numbers. */
function plain(v: Value): unknown {
  if (v instanceof Float) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v)
      Object.defineProperty(out, String(k), { value: plain(x), enumerable: true, writable: true });
    return out;
  }
  return v;
}

const cases = loadSovaEdits();
const runs = Number(process.env.FUZZ_RUNS ?? 300);

describe("every shared case decodes to its JSON value", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    expect(plain(readValue(c.bytes))).toEqual(c.value);
  });

  test("a leading U+FEFF and every other character survive (msgpackr drops the BOM of strings over 64 bytes)", () => {
    const v = readValue(sovaEdit("set_script_leading_bom").bytes) as Map<string, Value[]>;
    expect((v.get("SetScript")![2] as string).charCodeAt(0)).toBe(0xfeff);
  });

  test("keys that are JavaScript internals stay keys, never an object's prototype", () => {
    const v = readValue(sovaEdit("set_scene_prototype_keys").bytes);
    expect(Object.getPrototypeOf({})).not.toHaveProperty("polluted");
    expect(v).toBeInstanceOf(Map);
  });
});

describe("every shared case decodes to the edit it is", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const d = decodeEdit(c.bytes);
    expect(d.ok).toBe(true);
    const edit = (d as { edit: Edit }).edit;
    // Sova relays 21 variants; the others it never sends read as "not an edit of the scene".
    if (c.relayed) expect(edit.type).toBe(c.variant as Edit["type"]);
    else expect(edit).toEqual({ type: "Other", variant: c.variant });
  });

  test("indices past 2^53 stay exact (usize::MAX), timings keep their beat or line", () => {
    const d = decodeEdit(sovaEdit("set_script_usize_max_indices").bytes);
    expect(d).toMatchObject({ ok: true, edit: { line: 0xffff_ffff_ffff_ffffn, frame: 0xffff_ffff_ffff_ffffn } });
    const beat = decodeEdit(sovaEdit("set_script_at_beat_above_2_53").bytes);
    expect(beat).toMatchObject({ ok: true, edit: { timing: { kind: "AtBeat", beat: 9007199254740993n } } });
  });

  test("a struct variant's fields by name, a paste's target as (row = frame, col = line)", () => {
    const d = decodeEdit(sovaEdit("paste_data_block").bytes);
    expect(d).toMatchObject({ ok: true, edit: { type: "PasteDataBlock", line: 1, frame: 2 } });
  });
});

describe("what no Sova could read is refused, never thrown", () => {
  test("every prefix of every case (truncated in every place)", () => {
    for (const c of cases) {
      if (c.bytes.length > 4096) continue;
      for (let n = 0; n < c.bytes.length; n++) {
        const d = decodeEdit(c.bytes.subarray(0, n));
        expect(d.ok).toBe(false);
      }
    }
  });

  test("nesting past the limit, a claimed length past the data, reserved and ext markers, bad UTF-8", () => {
    const deep = new Uint8Array(100_000).fill(0x91); // [[[[...]]]]
    const bad = [
      deep,
      Uint8Array.of(0x81, 0xa4, ...Buffer.from("Chat"), 0xdd, 0xff, 0xff, 0xff, 0xff),
      Uint8Array.of(0x81, 0xa4, ...Buffer.from("Chat"), 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61),
      Uint8Array.of(0x81, 0xa4, ...Buffer.from("Chat"), 0xc1),
      Uint8Array.of(0x81, 0xa4, ...Buffer.from("Chat"), 0xd4, 0x01, 0x02),
      Uint8Array.of(0x81, 0xa4, ...Buffer.from("Chat"), 0xa2, 0xc3, 0x28),
      Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff),
    ];
    for (const b of bad) expect(decodeEdit(b).ok).toBe(false);
    expect(decodeEdit(deep)).toMatchObject({ reason: `nested deeper than ${MAX_DEPTH}` });
  });

  test("unknown variants, wrong shapes and wrong types", () => {
    const pack = (v: unknown) => {
      const enc = (x: unknown): number[] => {
        if (typeof x === "string") return [0xa0 | x.length, ...Buffer.from(x)];
        if (typeof x === "number") return x >= 0 ? [x] : [0xff];
        if (x === null) return [0xc0];
        if (Array.isArray(x)) return [0x90 | x.length, ...x.flatMap(enc)];
        const entries = Object.entries(x as object);
        return [0x80 | entries.length, ...entries.flatMap(([k, y]) => [...enc(k), ...enc(y)])];
      };
      return Uint8Array.from(enc(v));
    };
    const bad = [
      { Nonsense: [1, 2] },
      { SetScript: [0, 0, "x"] }, // a field short
      { SetScript: [0, -1, "x", "Immediate"] }, // a negative index
      { SetScript: [0, 0, 5, "Immediate"] }, // a number for a string
      { SetScript: [0, 0, "x", "Later"] }, // an unknown timing
      { Chat: [1] },
      { UpdateGridSelection: { start: [0], end: [0, 0] } },
      { DuplicateFrameRange: { src_line_idx: 0 } }, // missing fields
      "SetScript", // a tuple variant without its fields
      { GetScene: 1 }, // a unit variant with a payload
      { a: 1, b: 2 },
    ];
    for (const v of bad) expect(decodeEdit(pack(v)).ok).toBe(false);
    // Serde also names a variant by its index in the enum: 11 is Chat.
    expect(decodeEdit(Uint8Array.of(0x81, 11, 0xa2, 0x68, 0x69))).toEqual({
      ok: true,
      edit: { type: "Chat", text: "hi" },
    });
  });

  test("random and mutated bytes (fast-check)", () => {
    const seeds = cases.filter((c) => c.bytes.length < 2048).map((c) => c.bytes);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 512 }),
          fc
            .tuple(
              fc.constantFrom(...seeds),
              fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
            )
            .map(([seed, flips]) => {
              const b = Uint8Array.from(seed);
              for (const [at, v] of flips) b[at % b.length] = v;
              return b;
            }),
        ),
        (bytes) => {
          const d = decodeEdit(bytes);
          expect(typeof d.ok).toBe("boolean");
        },
      ),
      { numRuns: runs },
    );
  });
});
