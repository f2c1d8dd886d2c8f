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

/** Where a listener was to open, for listenError's line. */
export interface ListenAt {
  /** "" for the relay's own port, " for HTTP" beside it. */
  what: string;
  address: string;
  port: number;
  /** The option that names the port, suggested when it is one to change. */
  flag: string;
}

/**
 * A listener that could not open, as one line. A port in use (another relay, often) or one this user may not
 * open is a setting to change: E_CONFIG, exit 2, which the systemd unit does not restart into again. Anything
 * else (an address not up yet) is E_STARTUP.
 */
export function listenError(error: unknown, at: ListenAt): RelayError {
  const code = (error as NodeJS.ErrnoException).code;
  const where = `cannot listen${at.what} on ${at.address}:${at.port}`;
  if (code === "EADDRINUSE")
    return new RelayError("E_CONFIG", `${where}: the port is in use (another relay?); choose another ${at.flag}`, {
      cause: error,
    });
  if (code === "EACCES")
    return new RelayError(
      "E_CONFIG",
      `${where}: not allowed (a port below 1024 needs root or CAP_NET_BIND_SERVICE); choose another ${at.flag}`,
      { cause: error },
    );
  return new RelayError("E_STARTUP", `${where} (${code ?? (error as Error).message})`, { cause: error });
}
