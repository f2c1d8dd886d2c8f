/** The protocol contract through `sova-relay tunnel` (in this process) to the relay's TLS port; the relay from source. */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";
import { overTunnel } from "../support/runners.ts";

protocolSuite(overTunnel("tunnel over tls", startInProcess, "tls"));
