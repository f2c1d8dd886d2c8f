/**
 * The plain and the TLS listener, sharing one set of handlers so plain and TLS
 * instances meet in the same sessions, and the certificate reload (SIGHUP).
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Logger } from "../lib/log.ts";
import { listenTls, type Pem, readTlsPem, type TlsFiles } from "./tls.ts";

export interface ListenConfig extends TlsFiles {
  /** null: no plain listener (TLS only). */
  port: number | null;
  tlsPort: number | null;
}

export interface Listeners {
  readonly port: number | null;
  readonly tlsPort: number | null;
  /** Stop accepting; connections stay (listeners a reload replaced are retired now). */
  stopAccepting(): void;
  /** Close the listeners and whatever they still hold. */
  close(): void;
  /** Re-read the certificate and key; throws, keeping the old listener, when they are bad. */
  reloadTls(): void;
}

/**
 * `port` on `host` if no one listens there (0: any free port), found by opening and closing a listener without
 * SO_REUSEPORT. The TLS listener needs that option for reloads, and with it a second relay started on the same
 * port opened it beside the first without a word, and the kernel split the players between the two relays.
 */
function claimPort(host: string, port: number): number {
  const probe = Bun.listen({ hostname: host, port, socket: { data() {} } });
  const claimed = probe.port;
  probe.stop(true);
  return claimed;
}

/**
 * Opens the listeners (the plain one first; it is closed again if the TLS one fails).
 * `accept` is the handlers' `open`, given apart so a retiring listener can wrap it;
 * `onTlsFailed` runs when the TLS listener cannot open, before the error is rethrown.
 */
export function openListeners<T>(
  config: ListenConfig,
  pem: Pem | null,
  handlers: SocketHandler<T>,
  accept: (socket: Socket<T>) => void,
  log: Logger,
  onTlsFailed: () => void,
): Listeners {
  const plain =
    config.port !== null ? Bun.listen<T>({ hostname: config.host, port: config.port, socket: handlers }) : null;
  let tls: TCPSocketListener<T> | null = null;
  /** Listeners a reload replaced, each closed once drained (reloadTls). */
  const retiring = new Set<() => void>();
  try {
    tls =
      config.tlsPort !== null && pem !== null
        ? listenTls(config, claimPort(config.host, config.tlsPort), pem, handlers)
        : null;
  } catch (error) {
    plain?.stop(true);
    onTlsFailed();
    throw error;
  }
  const tlsPort = tls?.port ?? null;

  return {
    port: plain?.port ?? null,
    tlsPort,
    stopAccepting() {
      plain?.stop(false);
      tls?.stop(false);
      for (const retire of retiring) retire();
    },
    close() {
      plain?.stop(true);
      tls?.stop(true);
    },
    reloadTls() {
      if (tls === null) return;
      const pem = readTlsPem(config);
      // The new listener opens beside the old one (SO_REUSEPORT) before the old
      // stops, so the port is never without a listener. A bad certificate throws
      // here, with the old listener untouched; stop(false) keeps its connections.
      const next = listenTls(config, tlsPort!, pem, handlers);
      const old = tls;
      // Logged once the old listener is gone: from then on every new connection gets the new certificate.
      const retire = () => {
        if (!retiring.delete(retire)) return;
        old.stop(false);
        log.info(
          "tls_reloaded",
          `TLS certificate reloaded from ${config.tlsCert}; connected instances keep their sessions`,
          {},
        );
      };
      retiring.add(retire);
      // The kernel resets what waits in a listener's accept queue when it closes,
      // and keeps handing the old listener half the new connections while both
      // are open: close it just after it has emptied its queue (the next accept
      // on it, once that batch is done), or after a second if none comes.
      const acceptThenRetire = (s: Socket<T>) => {
        setImmediate(retire);
        accept(s);
      };
      old.reload({ socket: { ...handlers, open: acceptThenRetire } });
      setTimeout(retire, 1000).unref();
      tls = next;
    },
  };
}
