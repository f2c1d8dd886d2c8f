#!/usr/bin/env bash
# Checks the systemd unit with `systemd-analyze verify`, and that its hardening
# options are all there.
#   scripts/check-systemd-unit.sh [UNIT]      default: packaging/sova-relay.service
# verify wants ExecStart's binary to exist: a copy of the unit points it at
# dist/sova-relay (or at a stand-in when that is not built). verify exits 0 on an
# unknown key or a bad value: it warns and ignores the line, so a typo would drop
# a hardening option unseen. Any diagnostic about the unit fails the check too.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
unit="${1:-$root/packaging/sova-relay.service}"
HARDENING=(DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes MemoryMax=256M CPUQuota=50%)

command -v systemd-analyze >/dev/null || {
  echo "check-systemd-unit: systemd-analyze not found (Debian: apt-get install systemd)"
  exit 2
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
binary="$root/dist/sova-relay"
if [ ! -x "$binary" ]; then
  binary="$work/sova-relay"
  printf '#!/bin/sh\n' > "$binary"
  chmod 0755 "$binary"
fi
name="$(basename "$unit")"
sed "s|^ExecStart=/usr/local/bin/sova-relay|ExecStart=$binary|" "$unit" > "$work/$name"

status=0
out="$(systemd-analyze verify "$work/$name" 2>&1)" || status=1
if [ -n "$out" ]; then
  echo "$out"
  if grep -qF "$name" <<<"$out"; then status=1; fi
fi
for option in "${HARDENING[@]}"; do
  grep -qxF "$option" "$unit" || { echo "$unit: hardening option $option is missing"; status=1; }
done
if [ $status -eq 0 ]; then echo "valid: $unit"; else echo "INVALID: $unit"; fi
exit $status
