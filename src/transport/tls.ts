import type { SocketHandler, TCPSocketListener } from "bun";
import { RelayError } from "../lib/errors.ts";
import { readHostFile } from "../lib/files.ts";

export interface Pem {
  cert: string;
  key: string;
}

export interface TlsFiles {
  host: string;
  tlsCert: string;
  tlsKey: string;
}

function _readPem(path: string, flag: string): string {
  return readHostFile(path, flag);
}

export function readTlsPem(files: TlsFiles): Pem {
  return { cert: _readPem(files.tlsCert, "--tls-cert"), key: _readPem(files.tlsKey, "--tls-key") };
}

export function listenTls<T>(
  files: TlsFiles,
  port: number,
  pem: Pem,
  handlers: SocketHandler<T>,
): TCPSocketListener<T> {
  try {
    // SO_REUSEPORT lets a reload open the new listener before the old one closes.
    const options = {
      hostname: files.host,
      port,
      tls: { cert: pem.cert, key: pem.key },
      socket: handlers,
      reusePort: true,
    };
    return Bun.listen<T>(options);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    // Bun (BoringSSL) gives every bad certificate or key an ERR_OSSL_* code: no start
    // line, undecodable DER, a key that does not match the certificate.
    if (e.code?.startsWith("ERR_OSSL")) {
      const named = `--tls-cert '${files.tlsCert}', --tls-key '${files.tlsKey}'`;
      throw new RelayError("E_CONFIG", `invalid TLS certificate or key (${named}): ${e.message}`, { cause: e });
    }
    throw error;
  }
}
