/**
 * Spectators for the benchmark (`--spectators N`): one busy session watched by N
 * spectator pages while a scenario runs, to show what watching costs relaying.
 *
 * With `--spectators N` a scenario's relay also gets a state directory with a
 * spectator key for the session under load (the open session, or the hostile
 * scenario's pair), and a child process (this file run as a program) adds an
 * "editor" instance to that session, sending real Sova edits (scripts, cursor
 * moves, chat, a whole scene now and then; about 10 a second), and opens N
 * /watch/KEY/events streams, reading and counting what they get. The load's own
 * updates are not Sova edits: the page shows them as unreadable, which costs the
 * relay their decoding attempt and feed entries. The editor's updates reach the
 * load's receivers too, which ignore them (their sender field is out of range).
 *
 * A binary from before watching existed gets the same state directory and the
 * same editor, and no spectators: the same work for the relaying path.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../src/client/client.ts";
import { sessionHash } from "../src/core/access.ts";
import { loadSessionSecret } from "../src/storage/session-key.ts";
import { spectatorPath, writeSpectatorFile } from "../src/storage/spectator-file.ts";
import { keyDigest, makeKey } from "../src/watch/index.ts";
import type { BenchRelay } from "./relay-process.ts";

export interface SpectatorReport {
  spectators: number;
  events: number;
  bytes: number;
  failed: number;
  editorSent: number;
}

export interface Watching {
  /** Flags for the scenario's relay. */
  readonly flags: string[];
  /** Spectators open (0 for a binary without watching). */
  readonly count: number;
  /** The binary has watching (`sova-relay watch`). */
  readonly supported: boolean;
  /** Starts the editor and the spectators once the relay runs; the returned function stops them. */
  start(relay: BenchRelay & { httpPort?(): number | null }): Promise<() => Promise<SpectatorReport>>;
}

/** A case of Sova's own edits (tests/fixtures/sova-edits.json) as update_data bytes. */
function sovaEditBytes(name: string): Uint8Array {
  const fixture = JSON.parse(readFileSync(join(import.meta.dir, "..", "tests", "fixtures", "sova-edits.json"), "utf8"));
  return Buffer.from((fixture.cases as Array<{ name: string; hex: string }>).find((c) => c.name === name)!.hex, "hex");
}

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Whether `binary` (null: the sources) has `sova-relay watch`. */
function canWatch(binary: string | null, dir: string): boolean {
  const command = binary ? [binary] : [process.execPath, join(import.meta.dir, "..", "src", "main.ts")];
  return Bun.spawnSync([...command, "watch", "list", "--state-dir", dir], { stdout: "ignore", stderr: "ignore" })
    .success;
}

/**
 * `token`: the session under load (null: the open session). `own`: the scenario runs with the relay's own
 * flags, so give it an HTTP port and room for the editor past the default 20 instances (the hostile scenario
 * has its HTTP port, and its editor joins before its attackers).
 */
export function watching(binary: string | null, count: number, token: string | null, own: boolean): Watching {
  const dir = mkdtempSync(join(tmpdir(), "sova-bench-watch-"));
  const has = canWatch(binary, dir);
  const supported = count > 0 && has;
  const key = makeKey();
  const session = token === null ? "open" : sessionHash(token, loadSessionSecret(dir));
  if (supported) writeSpectatorFile(spectatorPath(dir), [{ session, digest: keyDigest(key) }]);
  const httpPort = freePort();
  return {
    flags: [
      "--state-dir",
      dir,
      ...(own ? ["--http-port", String(httpPort), "--max-instances", "64"] : []),
      // Every spectator comes from 127.0.0.1, past the default 8 per address.
      ...(supported ? ["--max-spectators-per-ip", String(count)] : []),
    ],
    count: supported ? count : 0,
    supported: has,
    async start(relay) {
      const port = own ? httpPort : (relay.httpPort?.() ?? httpPort);
      const child = Bun.spawn(
        [
          process.execPath,
          import.meta.path,
          JSON.stringify({ relayPort: relay.port, httpPort: port, key: supported ? key : "", count, token }),
        ],
        { stdin: "ignore", stdout: "pipe", stderr: "inherit" },
      );
      // Its first line says its editor is in and its spectators are reading; its last, what they got.
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("\n")) {
        const chunk = await lines.read();
        if (chunk.done) throw new Error("the spectators process ended before it was ready");
        text += chunk.value;
      }
      return async () => {
        child.kill("SIGTERM");
        for (let chunk = await lines.read(); !chunk.done; chunk = await lines.read()) text += chunk.value;
        await child.exited;
        return JSON.parse(text.trim().split("\n").pop() || "{}") as SpectatorReport;
      };
    },
  };
}

interface ChildSpec {
  relayPort: number;
  httpPort: number;
  key: string;
  count: number;
  token: string | null;
}

/** The edits the editor cycles through: mostly scripts, some cursor moves and chat, a scene now and then. */
const ROTATION = [
  "set_script",
  "update_grid_selection_range",
  "set_script_multiline",
  "set_script_html",
  "started_editing_frame",
  "set_script_unicode",
  "chat",
  "set_frame_name_some",
  "set_script_str16_256",
  "set_line_speed_factor",
];

async function child(spec: ChildSpec): Promise<void> {
  const report: SpectatorReport = { spectators: 0, events: 0, bytes: 0, failed: 0, editorSent: 0 };
  const editor = await connect({ port: spec.relayPort, keepInbox: false });
  await editor.register({ name: "bench-editor", token: spec.token });
  const scene = sovaEditBytes("set_scene_band");
  const edits = ROTATION.map(sovaEditBytes);
  editor.sendUpdate(scene);
  let n = 0;
  const timer = setInterval(() => {
    editor.sendUpdate(n % 100 === 99 ? scene : edits[n % edits.length]!);
    report.editorSent++;
    n++;
  }, 100);
  const readers: Array<{ cancel(): Promise<void> }> = [];
  if (spec.key) {
    for (let i = 0; i < spec.count; i++) {
      const res = await fetch(`http://127.0.0.1:${spec.httpPort}/watch/${spec.key}/events`).catch(() => null);
      if (res?.status !== 200) {
        report.failed++;
        continue;
      }
      report.spectators++;
      const reader = res!.body!.getReader();
      readers.push(reader);
      void (async () => {
        const decoder = new TextDecoder();
        for (;;) {
          const chunk = await reader.read().catch(() => null);
          if (!chunk || chunk.done) return;
          report.bytes += chunk.value.byteLength;
          report.events += decoder.decode(chunk.value, { stream: true }).split("\nevent: ").length - 1;
        }
      })();
    }
  }
  const stop = new Promise<void>((resolve) => process.once("SIGTERM", () => resolve()));
  console.log("ready");
  await stop;
  clearInterval(timer);
  for (const r of readers) await r.cancel().catch(() => {});
  editor.close();
  console.log(JSON.stringify(report));
  process.exit(0);
}

if (import.meta.main) await child(JSON.parse(process.argv[2]!) as ChildSpec);
