/**
 * podman standing in for Docker, for the recipes that say `docker` (no Docker engine and no
 * registry here). scripts/podman-env.sh gives this checkout a store of its own, so images
 * tagged with their published names (ghcr.io/sova-org/sova-relay:0.1.0, nats:2.9-alpine)
 * never meet another checkout's; recipes run with `docker` on PATH as a small shim: podman,
 * and for `docker compose` Debian's docker-compose 1.29 on podman's API socket. The relay's
 * image is built once per run, by the docs' own `docker build` recipe, and reused.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import pkg from "../../package.json" with { type: "json" };
import { BINARY, ROOT } from "./paths.ts";
import { recipe } from "./recipes.ts";
import { lineOrEnd, type Result, runCommand, watchOutput } from "./lines.ts";

/** The name the release workflow publishes the image under (README's stand-in for the account). */
export const PUBLISHED_IMAGE = `ghcr.io/sova-org/sova-relay:${pkg.version}`;
const SBIN_PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
const SHIM_DIR = join(ROOT, ".tmp", "podman", "bin");

/** Why the container recipes cannot run here, or null. */
export function podmanSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "podman's containers need root here; run the suite as root (.ci/run does)";
  for (const [tool, pkgName] of [
    ["podman", "podman"],
    ["runc", "runc"],
    ["docker-compose", "docker-compose"],
  ] as const)
    if (!Bun.which(tool, { PATH: SBIN_PATH }))
      return `${tool} is not installed (apt-get install ${pkgName}; .ci/run does)`;
  if (!existsSync(BINARY)) return `the image needs the compiled binary: ${BINARY} is not built (npm run build)`;
  return null;
}

let envOnce: Promise<Record<string, string>> | null = null;

/** The environment that selects this checkout's podman store (and, for recipes, the `docker` shim). */
export function podmanEnv(): Promise<Record<string, string>> {
  envOnce ??= (async () => {
    const r = await run(["bash", join(ROOT, "scripts", "podman-env.sh")], {}, 600_000);
    if (r.code !== 0) throw new Error(`scripts/podman-env.sh failed (${r.code}):\n${r.stderr}`);
    const env = Object.fromEntries(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(/=(.*)/s).slice(0, 2)),
    );
    mkdirSync(SHIM_DIR, { recursive: true });
    writeFileSync(
      join(SHIM_DIR, "docker"),
      `#!/bin/sh
# \`docker\` as the docs write it: podman (images in Docker's format, as docker build makes
# them), and for \`docker compose\` docker-compose 1.29 on podman's API socket (DOCKER_HOST).
case "$1" in
  compose) shift; exec docker-compose "$@" ;;
  build) shift; exec podman build --format docker "$@" ;;
  *) exec podman "$@" ;;
esac
`,
    );
    chmodSync(join(SHIM_DIR, "docker"), 0o755);
    return { ...env, PATH: `${SHIM_DIR}:${SBIN_PATH}` };
  })();
  return envOnce;
}

function run(argv: string[], options: { env?: Record<string, string>; cwd?: string }, timeoutMs: number) {
  return runCommand(argv, { env: options.env, cwd: options.cwd ?? ROOT, timeoutMs });
}

/** podman with this checkout's store. */
export async function podman(args: string[], timeoutMs = 120_000): Promise<Result> {
  return run(["podman", ...args], { env: await podmanEnv() }, timeoutMs);
}

/** A recipe's shell text, run as a reader would paste it (bash, stopping at the first failure), `docker` the shim. */
export async function shell(
  script: string,
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Result> {
  const env = { ...(await podmanEnv()), ...options.env };
  return run(["bash", "-e", "-o", "pipefail", "-c", script], { env, cwd: options.cwd }, options.timeoutMs ?? 300_000);
}

let counter = 0;
/** A container, project or volume name no other run uses. */
export function uniqueName(base: string): string {
  return `${base}-${process.pid}-${++counter}`;
}

let imageOnce: Promise<string> | null = null;

/**
 * The relay's image, built by the docs' `docker build` recipe from the compiled binary, and
 * tagged with its published name too: what `docker run ghcr.io/...` and the compose files
 * would pull is there, so nothing is pulled.
 */
export function relayImage(): Promise<string> {
  imageOnce ??= (async () => {
    // The suite runs on the binary .ci/run built; building it again here would replace it under running tests.
    const build = recipe("docker-build").with([[/^npm run build .*\n/m, ""]]);
    const r = await shell(build, { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`docker build recipe failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    const tag = await podman(["tag", `sova-relay:${pkg.version}`, PUBLISHED_IMAGE]);
    if (tag.code !== 0) throw new Error(`podman tag: ${tag.stderr}`);
    return PUBLISHED_IMAGE;
  })();
  return imageOnce;
}

/** An image made from a Containerfile and a context of files copied in. */
async function standIn(name: string, containerfile: string, files: Record<string, string> = {}): Promise<string> {
  const dir = mkdtempSync(join(ROOT, ".tmp", "image-"));
  try {
    writeFileSync(join(dir, "Containerfile"), containerfile);
    for (const [to, from] of Object.entries(files)) copyFileSync(from, join(dir, to));
    const r = await podman(["build", "--format", "docker", "-t", name, dir], 600_000);
    if (r.code !== 0) throw new Error(`building ${name}: ${r.stderr}`);
    return name;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let natsOnce: Promise<string> | null = null;
/**
 * `nats:2.9-alpine` as the cluster compose file names it, made from Debian's nats-server 2.9
 * (its entrypoint is nats-server, as the official image's is for arguments that start with -).
 */
export function natsImage(): Promise<string> {
  natsOnce ??= standIn(
    "docker.io/library/nats:2.9-alpine",
    'FROM localhost/debian:bookworm-slim\nCOPY nats-server /usr/local/bin/nats-server\nENTRYPOINT ["/usr/local/bin/nats-server"]\n',
    { "nats-server": Bun.which("nats-server", { PATH: SBIN_PATH }) ?? "/usr/sbin/nats-server" },
  );
  return natsOnce;
}

let prometheusOnce: Promise<string> | null = null;
/**
 * `prom/prometheus` as docs/docker.md runs it, made from Debian's prometheus: the official
 * image's entrypoint, configuration path and storage directory.
 */
export function prometheusImage(): Promise<string> {
  prometheusOnce ??= standIn(
    "docker.io/prom/prometheus:latest",
    "FROM localhost/debian:bookworm-slim\nCOPY prometheus /bin/prometheus\nRUN mkdir -p /etc/prometheus /prometheus\n" +
      'ENTRYPOINT ["/bin/prometheus"]\n' +
      'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]\n',
    { prometheus: Bun.which("prometheus", { PATH: SBIN_PATH }) ?? "/usr/bin/prometheus" },
  );
  return prometheusOnce;
}

let vpsOnce: Promise<string> | null = null;
/** A fresh Debian 12 server: systemd as PID 1, curl, openssl and CA certificates, nothing of ours. */
export function vpsImage(): Promise<string> {
  vpsOnce ??= (async () => {
    const r = await podman(
      ["build", "-t", "localhost/sova-test-vps", "-f", join(ROOT, "tests/fixtures/containers/vps.Containerfile"), "."],
      600_000,
    );
    if (r.code !== 0) throw new Error(`building the VPS image: ${r.stderr}`);
    return "localhost/sova-test-vps";
  })();
  return vpsOnce;
}

export interface ApiService {
  /** For docker-compose: DOCKER_HOST on this service's socket. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** `podman system service` on a socket of its own, for docker-compose. */
export async function apiService(): Promise<ApiService> {
  const dir = mkdtempSync(join(ROOT, ".tmp", "api-"));
  const socket = join(dir, "podman.sock");
  const proc: Subprocess<"ignore", "ignore", "pipe"> = Bun.spawn(
    ["podman", "--log-level=info", "system", "service", "--time=0", `unix://${socket}`],
    { env: { ...process.env, ...(await podmanEnv()) }, stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  await lineOrEnd(watchOutput([proc.stderr]), /API service listening/, "podman system service", 30_000);
  return {
    env: { DOCKER_HOST: `unix://${socket}` },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until a container's log (since an RFC 3339 time) has a line matching `pattern`: podman logs --follow. */
export async function containerLog(name: string, pattern: RegExp, timeoutMs = 30_000, since?: string): Promise<string> {
  const proc = Bun.spawn(["podman", "logs", "--follow", ...(since ? ["--since", since] : []), name], {
    env: { ...process.env, ...(await podmanEnv()) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    return await lineOrEnd(watchOutput([proc.stdout, proc.stderr]), pattern, `the log of ${name}`, timeoutMs);
  } finally {
    proc.kill();
  }
}
