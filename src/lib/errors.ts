/**
 * The one error type of the project. `code` is stable and machine-readable;
 * `message` is the one line a user (or a Sova instance) is shown; `cause`
 * (ES2022) keeps the error it wraps, for whoever debugs beyond that line.
 */
export type RelayErrorCode =
  | "E_CONFIG" // bad CLI option or environment value: exit 2
  | "E_DECODE" // a frame body rmp-serde would refuse
  | "E_STARTUP" // cannot listen, cannot read a file named by the config
  | "E_CLIENT"; // the typed client: connection closed, relay answered Error, timeout

export class RelayError extends Error {
  readonly code: RelayErrorCode;
  constructor(code: RelayErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RelayError";
    this.code = code;
  }
}

export function isRelayError(error: unknown, code?: RelayErrorCode): error is RelayError {
  return error instanceof RelayError && (code === undefined || error.code === code);
}
