/**
 * A certificate for a made-up public name (relay.example.org), self-signed, made for one
 * test run with openssl: a machine that trusts it in its own store (tests/support/machines.ts)
 * treats it as a player's machine treats a Let's Encrypt certificate.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./paths.ts";

export interface Pem {
  cert: string;
  key: string;
}

export function selfSigned(names: string[]): Pem {
  const dir = mkdtempSync(join(ROOT, ".tmp", "cert-"));
  try {
    const r = Bun.spawnSync(
      [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-days",
        "2",
        "-subj",
        `/CN=${names[0]}`,
        "-addext",
        `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    if (r.exitCode !== 0) throw new Error(`openssl req: ${r.stderr.toString()}`);
    return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** This host's CA bundle with `pem` added: what the machine's /etc/ssl/certs/ca-certificates.crt becomes. */
export function bundleWith(pem: Pem): string {
  let system = "";
  try {
    system = readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8");
  } catch {
    // no system bundle here: the machine trusts only this certificate
  }
  return `${system}${system.endsWith("\n") || system === "" ? "" : "\n"}${pem.cert}`;
}
