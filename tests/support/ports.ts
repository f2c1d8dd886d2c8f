/**
 * A port nothing listens on right now (bound and released). Never for the relay,
 * which takes `port: 0` / `any` and says which port it got: only for a program that
 * must be told a port in its configuration (nginx), and for a port that refuses.
 */
export function unusedPort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}
