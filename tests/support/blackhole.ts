/**
 * A TCP forwarder whose flows can be dropped on the way, as a NAT or a firewall that forgets
 * a flow drops it: nothing more passes and nothing is read, so each end's queued bytes stay
 * queued and neither hears a close. New flows pass as before, unless refused.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "bun";

interface End {
  other: Socket<End> | null;
  dropped: boolean;
  closed: boolean;
  early: Uint8Array[];
}

export interface Blackhole {
  readonly port: number;
  /** Drops every flow open now. */
  drop(): void;
  /** While on, a new flow is closed as it opens (the far end looks down). */
  refuse(on: boolean): void;
  /** New flows reach the far end this much later (a slow path: the near end's handshake waits). */
  hold(ms: number): void;
  /** Flows opened so far. */
  readonly opened: number;
  /** Flows neither dropped nor closed by either end. */
  live(): number;
  stop(): void;
}

function pass(from: Socket<End>, bytes: Uint8Array): void {
  const end = from.data;
  if (end.dropped) return;
  if (end.other) end.other.write(bytes);
  else end.early.push(new Uint8Array(bytes));
}

export function blackhole(targetPort: number): Blackhole {
  const flows: Array<[Socket<End>, Socket<End>]> = [];
  const nears: Socket<End>[] = [];
  let refusing = false;
  let holdMs = 0;
  let opened = 0;
  const closeOther = (s: Socket<End>) => {
    s.data.closed = true;
    if (!s.data.dropped) s.data.other?.end();
  };
  const server = Bun.listen<End>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(near) {
        near.data = { other: null, dropped: false, closed: false, early: [] };
        if (refusing) return void near.end();
        opened++;
        nears.push(near);
        if (holdMs > 0) await Bun.sleep(holdMs);
        if (near.data.closed) return;
        const far = await Bun.connect<End>({
          hostname: "127.0.0.1",
          port: targetPort,
          data: { other: near, dropped: false, closed: false, early: [] },
          socket: { data: pass, close: closeOther },
        });
        near.data.other = far;
        for (const bytes of near.data.early) far.write(bytes);
        flows.push([near, far]);
      },
      data: pass,
      close: closeOther,
    },
  });
  return {
    port: server.port,
    drop() {
      for (const flow of flows.splice(0))
        for (const s of flow) {
          s.data.dropped = true;
          s.pause();
        }
    },
    refuse(on) {
      refusing = on;
    },
    hold(ms) {
      holdMs = ms;
    },
    get opened() {
      return opened;
    },
    live: () => nears.filter((n) => !n.data.dropped && !n.data.closed && !n.data.other?.data.closed).length,
    stop: () => server.stop(true),
  };
}

/** The most a dropped flow can hold in the kernel: a full send buffer at one end, a full receive buffer at the other. */
export function kernelBuffers(): number {
  const max = (file: string) => {
    try {
      return Number(readFileSync(`/proc/sys/net/ipv4/${file}`, "utf8").trim().split(/\s+/)[2]) || 0;
    } catch {
      return 0;
    }
  };
  return Math.max(8 << 20, max("tcp_wmem") + max("tcp_rmem"));
}
