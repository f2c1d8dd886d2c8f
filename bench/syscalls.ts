/**
 * Counts a process's socket syscalls while something runs (`perf stat` on the
 * kernel's syscall tracepoints): how many writes the relay made for its deliveries,
 * how many reads, how many event-loop wake-ups. Optional: null without perf or
 * without the right to trace (perf_event_paranoid, not root).
 */
const EVENTS = {
  writes: ["sendto", "write", "writev", "sendmsg"],
  reads: ["recvfrom", "read"],
  polls: ["epoll_wait", "epoll_pwait", "epoll_pwait2"],
} as const;

export type SyscallCounts = Record<keyof typeof EVENTS, number>;

export interface SyscallCounter {
  stop(): Promise<SyscallCounts | null>;
}

export function countSyscalls(pid: number): SyscallCounter | null {
  if (!Bun.which("perf")) return null;
  const events = Object.values(EVENTS)
    .flat()
    .map((e) => `syscalls:sys_enter_${e}`);
  const perf = Bun.spawn(["perf", "stat", "-x", ",", "-e", events.join(","), "-p", String(pid)], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  return {
    async stop() {
      perf.kill("SIGINT");
      await perf.exited;
      const text = await new Response(perf.stderr).text();
      const counts: SyscallCounts = { writes: 0, reads: 0, polls: 0 };
      let seen = 0;
      for (const line of text.split("\n")) {
        const [value, , event] = line.split(",");
        const name = event?.replace("syscalls:sys_enter_", "");
        for (const [kind, names] of Object.entries(EVENTS) as Array<[keyof SyscallCounts, readonly string[]]>) {
          if (name !== undefined && names.includes(name) && /^\d+$/.test(value ?? "")) {
            counts[kind] += Number(value);
            seen++;
          }
        }
      }
      return seen > 0 ? counts : null;
    },
  };
}
