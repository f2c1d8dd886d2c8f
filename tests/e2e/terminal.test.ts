/**
 * What the command line prints for people respects the terminal: colour codes
 * only on a terminal (a real PTY here), never into a pipe or a file, and not
 * when NO_COLOR is set to anything or TERM is dumb.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "../support/paths.ts";

const SOURCE = [process.execPath, join(ROOT, "src/main.ts")];
const ESC = "\u001b[";

/** The environment a person's shell gives: none of the variables that turn citty's colours off by themselves. */
function plainEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  for (const k of ["CI", "TEST", "NO_COLOR", "FORCE_COLOR", "NODE_ENV"]) delete env[k];
  return { ...env, TERM: "xterm-256color", ...extra };
}

function piped(args: string[], env = plainEnv()) {
  const p = Bun.spawnSync([...SOURCE, ...args], { env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

/** Everything the command writes to a terminal (stdout and stderr both go to the PTY). */
async function onTerminal(args: string[], env = plainEnv(), cols = 200): Promise<{ code: number; text: string }> {
  let text = "";
  const decoder = new TextDecoder();
  const proc = Bun.spawn([...SOURCE, ...args], {
    env,
    terminal: {
      cols,
      rows: 50,
      data(_t, data) {
        text += decoder.decode(data, { stream: true });
      },
    },
  });
  const code = await proc.exited;
  proc.terminal?.close();
  return { code, text };
}

describe("colour only where a person reads it", () => {
  test("--help into a pipe has no colour codes, and still lists the options", () => {
    const r = piped(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("--max-instances");
    expect(r.out).not.toContain(ESC);
    const tunnel = piped(["tunnel", "--help"]);
    expect(tunnel.out).toContain("--to");
    expect(tunnel.out).not.toContain(ESC);
  });

  test("--help on a terminal is coloured (so the checks below see what they check)", async () => {
    const r = await onTerminal(["--help"]);
    expect(r.code).toBe(0);
    expect(r.text).toContain("--max-instances");
    expect(r.text).toContain(ESC);
  });

  test("on a terminal, NO_COLOR (any value) or TERM=dumb turn colour off", async () => {
    const cases: Record<string, string>[] = [{ NO_COLOR: "yes" }, { NO_COLOR: "1" }, { TERM: "dumb" }];
    for (const extra of cases) {
      const r = await onTerminal(["--help"], plainEnv(extra));
      expect(r.text).toContain("--max-instances");
      // The PTY itself adds no escapes; only colour codes would.
      expect({ extra, colour: r.text.includes(ESC) }).toEqual({ extra, colour: false });
    }
  });

  test("citty's own errors (an unknown sub-command) carry no colour into a pipe or under NO_COLOR", async () => {
    const r = piped(["history", "frob"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("sova-relay: Unknown command frob\n");
    const t = await onTerminal(["history", "frob"], plainEnv({ NO_COLOR: "yes" }));
    expect(t.code).toBe(2);
    expect(t.text).toContain("Unknown command frob");
    expect(t.text).not.toContain(ESC);
  });
});

describe("--help", () => {
  test("lists --help and --version, which citty leaves out", () => {
    const main = piped(["--help"]).out;
    expect(main).toMatch(/^ {2}--help, -h {2,}\S/m);
    expect(main).toMatch(/^ {2}--version, -v {2,}the version, commit and build target$/m);
    const version = piped(["--version"]);
    expect(version.out).toMatch(/^sova-relay \d+\.\d+\.\d+ \(commit \S+, target \S+\)\n$/);
    expect(piped(["tunnel", "--help"]).out).toMatch(/^ {2}--help, -h {2,}this text$/m);
  });

  test("on a terminal, wrapped to its width with a hanging indent", async () => {
    const r = await onTerminal(["--help"], plainEnv({ NO_COLOR: "1" }), 72);
    expect(r.code).toBe(0);
    const lines = r.text.split(/\r?\n/);
    expect(lines.filter((l) => l.length > 72)).toEqual([]);
    // A description that does not fit goes on under the first line's indent.
    const at = lines.indexOf("  --http-host=<addr>");
    expect(at).toBeGreaterThan(0);
    expect(lines.slice(at + 1, at + 3).every((l) => /^ {6}\S/.test(l))).toBe(true);
  });
});
