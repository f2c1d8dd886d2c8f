/** A child's output, line by line, into a log watcher (tests/support/relay.ts) as it comes. */
import { logWatcher } from "./relay.ts";

export type Watcher = ReturnType<typeof logWatcher>;

/** `done` resolves once every stream is read to its end: then a line not seen is a line never written. */
export function watchOutput(streams: Array<ReadableStream<Uint8Array>>): { watcher: Watcher; done: Promise<void> } {
  const watcher = logWatcher();
  const read = streams.map(async (stream) => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split(/(?<=\n)/);
      pending = lines.at(-1)!.endsWith("\n") ? "" : lines.pop()!;
      for (const line of lines) watcher.line(line);
    }
    if (pending) watcher.line(`${pending}\n`);
  });
  return { watcher, done: Promise.all(read).then(() => {}) };
}

/** The first line matching `pattern`, or an error once the output has ended without one. */
export function lineOrEnd(
  output: { watcher: Watcher; done: Promise<void> },
  pattern: RegExp,
  what: string,
  timeoutMs: number,
): Promise<string> {
  return Promise.race([
    output.watcher.waitForLog(pattern, timeoutMs),
    output.done.then(() => {
      const line = output.watcher.logs.find((l) => pattern.test(l));
      if (line) return line;
      throw new Error(`${what} ended before a line matching ${pattern}:\n${output.watcher.logs.join("")}`);
    }),
  ]);
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command run to its end (killed past `timeoutMs`), with what it printed. */
export async function runCommand(
  argv: string[],
  options: { env?: Record<string, string>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<Result> {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdin: options.input !== undefined ? new TextEncoder().encode(options.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}
