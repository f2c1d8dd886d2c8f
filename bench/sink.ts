/**
 * Opens N connections to HOST:PORT and discards whatever arrives: the far end of
 * bench/floor.ts. Prints "ready" once every connection is up.
 */
export {};

const [host, port, count] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
const sockets = await Promise.all(
  Array.from({ length: count }, () =>
    Bun.connect({ hostname: host, port, socket: { data() {}, close() {}, error() {} } }),
  ),
);
for (const s of sockets) s.timeout(0);
console.log("ready");
await new Promise(() => {});
