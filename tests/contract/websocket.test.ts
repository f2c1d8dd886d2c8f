/**
 * The protocol contract over a WebSocket straight to the relay's /relay (no
 * tunnel, no Origin header, as Sova's tunnel connects), against the source in
 * this process. One message carries one frame body, so the byte-stream cases
 * are skipped, each saying so.
 */
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess } from "../support/relay.ts";
import { overWebSocket } from "../support/runners.ts";

protocolSuite(overWebSocket("websocket", startInProcess));
