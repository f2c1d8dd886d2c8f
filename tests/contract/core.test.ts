/**
 * The protocol contract against the relay core alone (src/core/): no socket,
 * in-memory peers, its tick driven by timers (tests/support/core-relay.ts). The
 * same cases as over every transport, so a rule that breaks shows here first,
 * and a case that fails only elsewhere points at a transport.
 */
import { protocolSuite } from "./protocol.case.ts";
import { overCore } from "../support/core-relay.ts";

protocolSuite(overCore("core"));
