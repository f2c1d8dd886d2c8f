/**
 * Every `Error` text the relay sends, in one table keyed by the rule it
 * implements (docs/protocol.md, "Framing", "Connection flow", "Limits" and
 * "Nudges"). Sova shows these to players and tests compare them to rmp-serde's
 * vectors, so the wording lives here and nowhere else.
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
  /** Nudges: the last frame before the relay ends a registered connection (today's client needs it). */
  connectionLost: () => "Connection lost",
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
  | "cooldown";

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
};

/** What a player or host reads about one Error text (docs/reference/errors.md and the players' guide). */
export interface WireErrorHelp {
  /** Arguments that make a typical text for the docs. */
  readonly example: readonly (string | number)[];
  /** When the relay sends it, and whether the connection ends. */
  readonly when: "registration" | "registered";
  readonly closes: boolean;
  readonly meaning: string;
  readonly fix: string;
}

/** One entry per text above: a new text does not compile without what it means and what fixes it. */
export const WIRE_ERROR_HELP: { readonly [K in keyof typeof WIRE_ERRORS]: WireErrorHelp } = {
  emptyFrame: {
    example: [],
    when: "registration",
    closes: true,
    meaning:
      "A frame of length 0 before registering: what `sova-relay health` sends to check a relay. After registering," +
      " an empty frame gets `Invalid message: empty frame` and the connection stays.",
    fix: "Nothing: it answers a health check.",
  },
  tooLarge: {
    example: [2_000_000, 1_048_576],
    when: "registered",
    closes: false,
    meaning:
      "A frame over the relay's --max-message-size (before registration: over --handshake-max-bytes, and the" +
      " connection is closed). The frame is skipped; the edit did not reach anyone.",
    fix: "Send smaller edits, or ask the host to raise --max-message-size (and the tunnel's, which must match).",
  },
  expectedRegister: {
    example: [],
    when: "registration",
    closes: true,
    meaning: "Something other than RegisterInstance came first: not a Sova instance, or the wrong port.",
    fix: "Point Sova (not a browser or another program) at the relay's TCP port, or at a local tunnel.",
  },
  versionMismatch: {
    example: ["0.1.0", "0.2.0"],
    when: "registration",
    closes: true,
    meaning: "The instance's Sova version is not the one the relay expects (--expected-version).",
    fix: "Use the Sova version the relay expects, or ask the host to set --expected-version to yours.",
  },
  invalidToken: {
    example: [],
    when: "registration",
    closes: true,
    meaning: "The relay requires session tokens and this one is not among them (or none was given).",
    fix: "Enter the session token the host gave you exactly as given; after 10 wrong ones (by default) the address cools down.",
  },
  maxInstances: {
    example: [20],
    when: "registration",
    closes: true,
    meaning: "The relay is full: --max-instances instances are registered across all its sessions.",
    fix: "Wait for someone to leave, or ask the host to raise --max-instances.",
  },
  invalidName: {
    example: [],
    when: "registration",
    closes: true,
    meaning:
      "The instance name is empty, longer than 64 characters, has invisible, control or direction characters," +
      " or mixes Latin with Cyrillic or Greek letters (look-alikes).",
    fix: "Pick a plain name of 1 to 64 visible characters.",
  },
  nameTaken: {
    example: ["alice"],
    when: "registration",
    closes: true,
    meaning:
      "Someone in the session already uses this name (compared after Unicode normalisation and trimming)," +
      " or your previous connection has not been noticed as gone yet.",
    fix: "Pick another name, or reconnect in a few seconds.",
  },
  idMismatch: {
    example: [],
    when: "registered",
    closes: false,
    meaning: "A StateUpdate carried an instance id other than the one the relay assigned; it was dropped.",
    fix: "A client bug: Sova sends the id from its RegistrationResponse.",
  },
  invalidMessage: {
    example: ["missing field `timestamp`"],
    when: "registered",
    closes: false,
    meaning:
      "A frame that does not decode as a message of the protocol (the words are rmp-serde's); it was dropped." +
      " A RegisterInstance that does not decode closes the connection.",
    fix: "A client bug or a version mismatch between client and relay; the text says what was wrong.",
  },
  rateLimit: {
    example: ["alice"],
    when: "registered",
    closes: false,
    meaning:
      "The instance sent more than --rate-limit messages or --rate-limit-bytes bytes in 60 s; messages are" +
      " dropped until it is back under. Sent once a minute at most.",
    fix: "Send less (a script that re-sends in a loop), or ask the host to raise the limits.",
  },
  coolingDown: {
    example: [8000],
    when: "registration",
    closes: true,
    meaning:
      "Too many failed registrations (wrong tokens, junk) came from this address (IPv6: /64); every registration" +
      " from it is refused for --failed-registration-cooldown, right token or not.",
    fix: "Wait the seconds it says, then connect with the right token.",
  },
  tooManyRegistrations: {
    example: [],
    when: "registration",
    closes: true,
    meaning: "More than --max-registrations-per-ip registrations from this address in 60 s.",
    fix: "Wait a minute; a client that reconnects in a loop needs fixing.",
  },
  connectionLost: {
    example: [],
    when: "registered",
    closes: true,
    meaning:
      "The relay ended the connection (shutdown, too slow to read, memory pressure, replay or idle timeout);" +
      " the last frame it sends, so that today's Sova client notices.",
    fix: "Reconnect; if it repeats, the relay's log says why (`disconnected` with its reason).",
  },
};
