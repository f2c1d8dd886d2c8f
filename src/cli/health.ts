/**
 * `sova-relay health`: a check for container HEALTHCHECKs that needs no shell.
 * It sends the relay an empty frame before registering, which the relay
 * answers with `Error { "Invalid message: empty frame" }` (docs/protocol.md,
 * "Framing") and logs at debug level only, so a check never takes an instance
 * slot and no instance ever sees it come and go.
 */
import { defineCommand } from "citty";
import { connect } from "../client/client.ts";
import { option } from "../host/config.ts";
import { type OptionTable, argsDef, resolveOptions } from "../lib/options.ts";
import { RelayError } from "../lib/errors.ts";
import { WIRE_ERRORS } from "../protocol/wire-errors.ts";

export const PROBE_ANSWER = WIRE_ERRORS.emptyFrame();

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

interface HealthOptions {
  healthHost: string;
  port: number | null;
  healthTimeoutMs: number;
}

/** The relay's own --port row (so SOVA_RELAY_PORT in a container is the port checked), and two of the check's. */
export const HEALTH_OPTIONS: OptionTable<HealthOptions> = [
  {
    key: "healthHost",
    flag: "host",
    description: "Relay address",
    default: "127.0.0.1",
    type: "text",
    valueHint: "addr",
  },
  option("port"),
  {
    key: "healthTimeoutMs",
    flag: "timeout",
    description: "Seconds to wait for an answer",
    default: 3,
    type: "seconds",
    min: 0.001,
  },
];

export const healthCommand = defineCommand({
  meta: { name: "health", description: "Exit 0 when a relay answers at host:port, 1 (with the reason) when not" },
  args: argsDef(HEALTH_OPTIONS),
  async run({ args, rawArgs }) {
    const options = resolveOptions(HEALTH_OPTIONS, args, rawArgs);
    if (!options.port)
      throw new RelayError("E_CONFIG", "invalid value for --port: '0' (expected the relay's port, 1-65535)");
    const target = { host: options.healthHost, port: options.port, timeoutMs: options.healthTimeoutMs };
    try {
      await checkHealth(target);
    } catch (error) {
      console.error(`unhealthy: ${target.host}:${target.port}: ${(error as Error).message}`);
      process.exit(1);
    }
    console.log(`healthy: relay answering at ${target.host}:${target.port}`);
  },
});
