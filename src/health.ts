/**
 * `sova-relay health`: a check for container HEALTHCHECKs that needs no shell.
 * It sends the relay an empty frame before registering, which the relay
 * answers with `Error { "Invalid message: empty frame" }` (PROTOCOL.md,
 * Framing) and logs at debug level only, so a check never takes an instance
 * slot and no instance ever sees it come and go.
 */
import { defineCommand } from "citty";
import { connect } from "./client.ts";
import { RelayError } from "./errors.ts";

export const PROBE_ANSWER = "Invalid message: empty frame";

export interface HealthTarget {
  host: string;
  port: number;
  timeoutMs: number;
}

/** Resolves with nothing when the relay answered; throws RelayError saying why not. */
export async function checkHealth(target: HealthTarget): Promise<void> {
  const client = await connect({ host: target.host, port: target.port, connectTimeoutMs: target.timeoutMs });
  try {
    client.sendRaw(new Uint8Array(4));
    const answer = await client.next("Error", { timeoutMs: target.timeoutMs });
    if (answer.message !== PROBE_ANSWER) throw new RelayError("E_CLIENT", `unexpected answer: ${answer.message}`);
  } finally {
    client.close();
  }
}

function parseTarget(args: Record<string, unknown>): HealthTarget {
  const port = Number(args.port);
  const timeout = Number(args.timeout);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RelayError("E_CONFIG", `invalid value for --port: '${args.port}' (expected 1-65535)`);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new RelayError("E_CONFIG", `invalid value for --timeout: '${args.timeout}' (expected seconds > 0)`);
  return { host: String(args.host), port, timeoutMs: timeout * 1000 };
}

export const healthCommand = defineCommand({
  meta: { name: "health", description: "Exit 0 when a relay answers at host:port, 1 (with the reason) when not" },
  args: {
    host: { type: "string", description: "Relay address", default: process.env.SOVA_RELAY_HEALTH_HOST ?? "127.0.0.1" },
    port: { type: "string", description: "Relay port", default: process.env.SOVA_RELAY_PORT ?? "9090" },
    timeout: { type: "string", description: "Seconds to wait for an answer", default: "3" },
  },
  async run({ args }) {
    const target = parseTarget(args);
    try {
      await checkHealth(target);
    } catch (error) {
      console.error(`unhealthy: ${target.host}:${target.port}: ${(error as Error).message}`);
      process.exit(1);
    }
    console.log(`healthy: relay answering at ${target.host}:${target.port}`);
  },
});
