/**
 * The protocol contract over the other transports: a plain TCP client (the
 * project's, and a raw-socket double of today's Sova client) talks to an
 * in-process `sova-relay tunnel`, which carries it to the relay's WebSocket
 * endpoint or its TLS port. Against the source here; against the compiled
 * binary over WebSocket when one is built.
 */
import { existsSync } from "node:fs";
import { protocolSuite } from "./protocol.case.ts";
import { startInProcess, startProcess } from "../support/relay.ts";
import { viaTunnel } from "../support/transport.ts";
import { BINARY } from "../support/paths.ts";

protocolSuite("websocket via tunnel (source)", viaTunnel(startInProcess, "ws"));
protocolSuite("tls via tunnel (source)", viaTunnel(startInProcess, "tls"));

const binary = BINARY;
if (existsSync(binary)) protocolSuite("websocket via tunnel (binary)", viaTunnel(startProcess([binary]), "ws"));
else
  console.warn(
    `SKIP: the contract suite over WebSocket against the compiled binary` +
      ` because ${binary} is not built (npm run build)`,
  );
