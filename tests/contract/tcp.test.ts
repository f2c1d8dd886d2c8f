/** The protocol contract over plain TCP, against the relay running from source in this process. */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";
import { overTcp } from "../support/runners.ts";

protocolSuite(overTcp("tcp", startInProcess));
