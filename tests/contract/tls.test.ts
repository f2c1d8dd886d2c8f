/** The protocol contract over TLS straight to the relay's --tls-port, against the source in this process. */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";
import { overTls } from "../support/runners.ts";

protocolSuite(overTls("tls", startInProcess));
