/**
 * The protocol contract through `sova-relay tunnel` (in this process) to the
 * relay's WebSocket endpoint: a plain TCP peer, as today's Sova is, on the
 * tunnel's port; the relay from source.
 */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";
import { overTunnel } from "../support/runners.ts";

protocolSuite(overTunnel("tunnel over websocket", startInProcess, "ws"));
