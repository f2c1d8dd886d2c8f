/**
 * Every `Error` text the relay sends, in one table keyed by the PROTOCOL.md rule
 * it implements. Sova shows these to players and tests compare them to
 * rmp-serde's vectors, so the wording lives here and nowhere else.
 */
export const WIRE_ERRORS = {
  /** Framing: a frame of length 0. */
  emptyFrame: () => "Invalid message: empty frame",
  /** Framing: a length over the maximum (before registration: the handshake cap). */
  tooLarge: (length: number, max: number) => `Message too large: ${length} bytes (max: ${max})`,
  /** Connection flow 2: anything but RegisterInstance first. */
  expectedRegister: () => "Expected RegisterInstance message",
  /** Connection flow 3, in its order. */
  versionMismatch: (expected: string, actual: string) => `Version mismatch: expected ${expected}, got ${actual}`,
  invalidToken: () => "Invalid session token",
  maxInstances: (max: number) => `Maximum instances (${max}) reached`,
  invalidName: () => "Invalid instance name",
  nameTaken: (name: string) => `Instance name '${name}' already in use`,
  /** Connection flow 5. */
  idMismatch: () => "Instance ID mismatch",
  /** Connection flow 8 (and a RegisterInstance that does not decode). */
  invalidMessage: (why: string) => `Invalid message: ${why}`,
  /** Limits: the first message dropped in a window. */
  rateLimit: (name: string) => `Rate limit exceeded for instance ${name}`,
  /** Limits (this relay's): an address that used up its failed registrations; the same answer whatever the token. */
  coolingDown: (waitMs: number) =>
    `Too many failed registrations from this address; try again in ${Math.ceil(waitMs / 1000)} s`,
  /** Limits (this relay's): one address registering in a loop. */
  tooManyRegistrations: () => "Too many registrations from this address; try again in a minute",
  /** What today's client needs: the last frame before the relay ends a registered connection. */
  connectionLost: () => "Connection lost",
  /** Resumption (docs/resume.md): the one Error a tunnel gets when its session cannot be restored; it tells Sova
   * "Connection lost". */
  resumeRefused: (why: string) => `Resume refused: ${why}`,
} as const;

/** Why a registration was refused; `peerFault` ones feed the guard's failed-registration count. */
export type RejectReason =
  | "version"
  | "token"
  | "capacity"
  | "name"
  | "name_taken"
  | "invalid"
  | "not_register"
  | "empty"
  | "oversized"
  | "registration_rate"
  | "cooldown"
  | "resume_secret";

/**
 * Failures that say the peer is guessing a token or sending junk. A wrong version or
 * a refused name is a player's honest mistake: counting those let one typo behind a
 * venue's NAT help lock everyone there out.
 */
export const PEER_FAULT: Readonly<Record<RejectReason, boolean>> = {
  version: false,
  token: true,
  capacity: false,
  name: false,
  name_taken: false,
  invalid: true,
  not_register: true,
  empty: false,
  oversized: true,
  registration_rate: false,
  // Already refused for failing: counting these again would only lengthen the wait.
  cooldown: false,
  // A secret the relay never gave is a guess.
  resume_secret: true,
};
