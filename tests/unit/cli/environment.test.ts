/**
 * Which command reads which `SOVA_RELAY_*` names (src/cli/environment.ts): a
 * name in the wrong command's environment stops it, except the relay's own in
 * the commands that run beside it (health, history clear); and every name the
 * project's recipes set is read by something, so following a recipe never
 * meets "not a setting".
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { checkCommandEnvironment, envScopes } from "../../../src/cli/environment.ts";
import { ROOT } from "../../support/paths.ts";

function refusal(run: () => void): string | null {
  try {
    run();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The container image's environment, as Dockerfile.prebuilt sets it for the relay and its HEALTHCHECK. */
function imageEnvironment(): Record<string, string> {
  const text = readFileSync(join(ROOT, "Dockerfile.prebuilt"), "utf8");
  const env: Record<string, string> = {};
  for (const [, name, value] of text.matchAll(/\b(SOVA_RELAY_[A-Z0-9_]+)=(\S+)/g)) env[name!] = value!;
  return env;
}

describe("each command's names", () => {
  test("the relay refuses a typo (naming the closest) and the names of health and of the tunnel", () => {
    expect(refusal(() => checkCommandEnvironment("relay", { SOVA_RELAY_TOKEN: "x" }))).toContain(
      "did you mean SOVA_RELAY_TOKENS?",
    );
    expect(refusal(() => checkCommandEnvironment("relay", { SOVA_RELAY_TO: "wss://x/relay" }))).toContain(
      "read by `sova-relay tunnel`",
    );
    expect(refusal(() => checkCommandEnvironment("relay", { SOVA_RELAY_HEALTH_TIMEOUT: "1" }))).toContain(
      "read by `sova-relay health`",
    );
    expect(refusal(() => checkCommandEnvironment("relay", { SOVA_RELAY_VERSION: "0.2.0" }))).toContain(
      "read by `install.sh`",
    );
    expect(refusal(() => checkCommandEnvironment("relay", { SOVA_MAX_INSTANCES: "3", RUST_LOG: "debug" }))).toBeNull();
  });

  test("health and history clear run in the relay's environment: the container image's is theirs too", () => {
    const env = imageEnvironment();
    expect(Object.keys(env)).toContain("SOVA_RELAY_PORT");
    expect(refusal(() => checkCommandEnvironment("relay", env))).toBeNull();
    expect(refusal(() => checkCommandEnvironment("health", env))).toBeNull();
    expect(refusal(() => checkCommandEnvironment("history clear", env))).toBeNull();
    // ... but not the tunnel's, nor a typo.
    expect(refusal(() => checkCommandEnvironment("health", { ...env, SOVA_RELAY_LISTEN: "x" }))).toContain(
      "read by `sova-relay tunnel`",
    );
    expect(refusal(() => checkCommandEnvironment("history clear", { SOVA_RELAY_STATE_DIRS: "/x" }))).toContain(
      "did you mean SOVA_RELAY_STATE_DIR?",
    );
  });

  test("the tunnel, on a player's machine, reads only its own: the relay's token is not for it", () => {
    expect(refusal(() => checkCommandEnvironment("tunnel", { SOVA_RELAY_TOKENS: "x" }))).toContain(
      "SOVA_RELAY_TOKENS is read by `sova-relay`, not by `sova-relay tunnel`",
    );
    expect(
      refusal(() =>
        checkCommandEnvironment("tunnel", { SOVA_RELAY_TO: "wss://x/relay", SOVA_RELAY_LOG_LEVEL: "debug" }),
      ),
    ).toBeNull();
  });
});

/** Files a host copies from or runs, and the fenced blocks of the docs. */
function recipeTexts(): Array<[string, string]> {
  const files = ["install.sh", "Dockerfile.prebuilt", "docker-compose.yml", "docker-compose.cluster.yml"];
  const dirs = ["packaging", "scripts", ".github/workflows", "docs"];
  for (const dir of dirs) {
    try {
      for (const f of readdirSync(join(ROOT, dir), { recursive: true }) as string[]) files.push(join(dir, f));
    } catch {
      // a folder this checkout does not have
    }
  }
  const out: Array<[string, string]> = [];
  for (const file of [...files, "README.md"]) {
    let text: string;
    try {
      text = readFileSync(join(ROOT, file), "utf8");
    } catch {
      continue;
    }
    if (file.endsWith(".md")) text = [...text.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)].map((m) => m[1]).join("\n");
    out.push([file, text]);
  }
  return out;
}

describe("the recipes", () => {
  test("every SOVA_RELAY_* name they set is read by a command or script of the project", () => {
    const scopes = envScopes();
    const known = new Set(
      [scopes.relay, scopes.health, scopes["history clear"], scopes.tunnel, ...scopes.scripts].flatMap((s) => s.names),
    );
    const unknown: string[] = [];
    let seen = 0;
    for (const [file, text] of recipeTexts()) {
      for (const [name] of text.matchAll(/\bSOVA_RELAY_[A-Z0-9_]*[A-Z0-9]\b/g)) {
        seen++;
        if (!known.has(name)) unknown.push(`${file}: ${name}`);
      }
    }
    expect(seen).toBeGreaterThan(20);
    expect(unknown).toEqual([]);
  });

  test("install.sh's names are listed as install.sh's", () => {
    const text = readFileSync(join(ROOT, "install.sh"), "utf8");
    const read = new Set([...text.matchAll(/\$\{(SOVA_RELAY_[A-Z0-9_]+)/g)].map((m) => m[1]!));
    const install = envScopes().scripts.find((s) => s.command === "install.sh")!;
    expect([...read].sort()).toEqual([...install.names].sort());
  });
});
