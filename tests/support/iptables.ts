/**
 * Dropping loopback packets with iptables, for tests of peers that vanish
 * without FIN or RST: only as root, with the binary there; otherwise the test
 * skips with one loud line saying which.
 */
// Looked up first: Bun.spawnSync throws (while the file loads) when the binary is missing.
const IPTABLES = Bun.which("iptables");

export function iptables(args: string[]): boolean {
  return (
    IPTABLES !== null && Bun.spawnSync([IPTABLES, "-w", ...args], { stdout: "ignore", stderr: "ignore" }).exitCode === 0
  );
}

export const canDropPackets = process.getuid?.() === 0 && iptables(["-L", "INPUT", "-n"]);

/** Why packets cannot be dropped here, for the skip line. */
export function whyNoIptables(): string {
  if (IPTABLES === null) return "no iptables binary (apt-get install iptables)";
  return process.getuid?.() !== 0 ? "not running as root" : `${IPTABLES} -L failed`;
}
