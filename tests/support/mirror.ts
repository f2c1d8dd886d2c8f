/**
 * A release laid out as GitHub lays it out (RELEASES/latest/download/FILE and
 * RELEASES/download/vVERSION/FILE), made from this checkout: install.sh, the systemd unit, the
 * compiled binary under this machine's asset names, and SHA256SUMS. Served as file:// (curl
 * reads it as it reads https://github.com/...), so a machine or a container that mounts it
 * installs exactly what a release would give it. install.sh takes such a mirror with its
 * --base-url, as a mirror's users do.
 */
import { createHash } from "node:crypto";
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { BINARY, ROOT } from "./paths.ts";

export interface Mirror {
  /** The directory that stands for https://github.com/OWNER/sova-relay/releases. */
  dir: string;
  url: string;
  remove(): void;
}

/** The asset names install.sh may pick on this machine (x64: with or without AVX2). */
function nativeAssets(): string[] {
  return process.arch === "arm64"
    ? ["sova-relay-linux-arm64"]
    : ["sova-relay-linux-x64", "sova-relay-linux-x64-baseline"];
}

export function makeMirror(): Mirror {
  const dir = mkdtempSync(join(ROOT, ".tmp", "releases-"));
  const release = join(dir, "download", `v${pkg.version}`);
  mkdirSync(release, { recursive: true });
  const sums: string[] = [];
  const binaryHash = createHash("sha256").update(readFileSync(BINARY)).digest("hex");
  for (const asset of nativeAssets()) {
    try {
      linkSync(BINARY, join(release, asset));
    } catch {
      copyFileSync(BINARY, join(release, asset));
    }
    sums.push(`${binaryHash}  ${asset}`);
  }
  copyFileSync(join(ROOT, "install.sh"), join(release, "install.sh"));
  copyFileSync(join(ROOT, "packaging", "sova-relay.service"), join(release, "sova-relay.service"));
  writeFileSync(join(release, "SHA256SUMS"), `${sums.join("\n")}\n`);
  // latest/download/ is where GitHub redirects to the newest release's files.
  mkdirSync(join(dir, "latest"), { recursive: true });
  Bun.spawnSync(["ln", "-s", `../download/v${pkg.version}`, join(dir, "latest", "download")]);
  return { dir, url: `file://${dir}`, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
