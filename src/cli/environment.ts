/**
 * Which `SOVA_RELAY_*` names each command reads, so that a command started with
 * a name it does not read stops (src/lib/environment.ts says how): a typo, or a
 * name that belongs elsewhere. Every name read by some command or script of the
 * project is listed here, so the error can say whose it is.
 *
 * `health` and `history clear` run in the relay's own environment (a container's
 * HEALTHCHECK, `docker exec`): health finds the relay from its variables
 * (SOVA_RELAY_PORT), history clear its state directory. The relay's names are
 * therefore not wrong for them; their own names are wrong for the relay, and
 * the tunnel, on a player's machine, reads only its own.
 */
import { RELAY_ENV } from "../host/config.ts";
import { checkEnvironment, type EnvScope } from "../lib/environment.ts";
import { type Env, envNamesOf } from "../lib/options.ts";
import { HEALTH_OPTIONS } from "./health.ts";
import { CLEAR_OPTIONS } from "./history.ts";
import { TUNNEL_OPTIONS } from "./tunnel.ts";

export type CommandName = "relay" | "health" | "history clear" | "tunnel";

const COMMANDS: Record<CommandName, EnvScope> = {
  relay: { command: "sova-relay", names: RELAY_ENV },
  health: { command: "sova-relay health", names: envNamesOf(HEALTH_OPTIONS) },
  "history clear": { command: "sova-relay history clear", names: envNamesOf(CLEAR_OPTIONS) },
  tunnel: { command: "sova-relay tunnel", names: envNamesOf(TUNNEL_OPTIONS) },
};

/** Read by the project's scripts, never by the binary. */
const SCRIPTS: readonly EnvScope[] = [
  {
    command: "install.sh",
    names: [
      "SOVA_RELAY_VERSION",
      "SOVA_RELAY_PREFIX",
      "SOVA_RELAY_BASE_URL",
      "SOVA_RELAY_OS",
      "SOVA_RELAY_ARCH",
      "SOVA_RELAY_LIBC",
      "SOVA_RELAY_AVX2",
    ],
  },
  // Compose reads it to fill in the Traefik labels; it never reaches the relay's container.
  { command: "docker-compose.yml", names: ["SOVA_RELAY_DOMAIN"] },
];

/** Commands that run in the relay's environment, and so pass the relay's names. */
const IN_RELAY_ENVIRONMENT: ReadonlySet<CommandName> = new Set(["health", "history clear"]);

/** Every scope, for tests and the reference docs. */
export function envScopes(): Record<CommandName, EnvScope> & { scripts: readonly EnvScope[] } {
  return { ...COMMANDS, scripts: SCRIPTS };
}

/** Throws (E_CONFIG, exit 2) when `env` holds a `SOVA_RELAY_*` name the command does not read. */
export function checkCommandEnvironment(command: CommandName, env: Env = process.env): void {
  const own = COMMANDS[command];
  const others = [...Object.values(COMMANDS).filter((s) => s !== own), ...SCRIPTS];
  const tolerated = IN_RELAY_ENVIRONMENT.has(command) ? COMMANDS.relay.names : [];
  checkEnvironment(env, own, others, tolerated);
}
