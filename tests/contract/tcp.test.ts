/** The protocol contract against the relay running from source, in this process. */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";

protocolSuite("source", startInProcess);
