/**
 * The version a Sova instance reports in RegisterInstance. It is Sova's, not
 * the relay's: every Sova build at the protocol's last commit reports 0.1.0
 * (docs/protocol.md, "Messages"), and the relay's own releases must not change
 * what it lets in. A relay for a newer Sova is started with --expected-version.
 */
export const SOVA_PROTOCOL_VERSION = "0.1.0";
