#!/usr/bin/env bash
# Prepares podman to stand in for Docker here (no Docker engine, no registry) and
# prints the environment that selects it, one KEY=VALUE a line:
#   eval "$(bash scripts/podman-env.sh)"
# used by container-smoke.sh and the container tests (tests/support/podman.ts).
#   - a store of this checkout's own (.tmp/podman): images tagged with the published
#     names here never meet another checkout's, whatever runs at the same time;
#   - runc (crun refuses this machine's hybrid cgroups) and ulimits the host allows;
#   - short names (nats:2.9-alpine) resolve to docker.io, as under Docker;
#   - debian:bookworm-slim made with debootstrap from Debian's mirror (no registry is
#     reachable), taken from the default store when another run made it already.
# Needs root; installs podman from Debian's packages when it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.tmp/podman"
say() { echo "podman-env: $*" >&2; }

[ "$(id -u)" = 0 ] || { say "needs root"; exit 3; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing podman from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc conmon netavark aardvark-dns containernetworking-plugins iptables uidmap debootstrap >/dev/null; } >&2
fi

mkdir -p "$state/storage"
# The run root holds sockets whose paths must stay short: under /run, one per checkout.
runroot="/run/sova-podman-$(printf '%s' "$root" | sha1sum | cut -c1-10)"
nofile=$(ulimit -Hn)
cat > "$state/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=8192:8192"]
[engine]
runtime = "runc"
CONF
cat > "$state/storage.conf" <<CONF
[storage]
driver = "${STORAGE_DRIVER:-overlay}"
graphroot = "$state/storage"
runroot = "$runroot"
CONF
cat > "$state/registries.conf" <<CONF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
CONF

base=localhost/debian:bookworm-slim
private=(env CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf"
  CONTAINERS_REGISTRIES_CONF="$state/registries.conf" podman)
if ! "${private[@]}" image exists "$base"; then
  if podman image exists "$base" 2>/dev/null; then
    say "$base from the default store"
    podman save "$base" 2>/dev/null | "${private[@]}" load >/dev/null 2>&1
  else
    mirror=$(grep -hoE '^URIs: *http[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    [ -n "$mirror" ] ||
      mirror=$(grep -hoE '^deb +http[^ ]+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
    say "debootstrap bookworm from $mirror for $base"
    rm -rf "$state/rootfs"
    debootstrap --variant=minbase bookworm "$state/rootfs" "$mirror" >/dev/null
    # Trim what the official slim image leaves out too.
    rm -rf "$state/rootfs"/var/cache/apt/* "$state/rootfs"/var/lib/apt/lists/* "$state/rootfs"/usr/share/doc/* \
      "$state/rootfs"/usr/share/man/* "$state/rootfs"/usr/share/locale/* "$state/rootfs"/usr/share/info/*
    tar -C "$state/rootfs" -c . | "${private[@]}" import - "$base" >/dev/null 2>&1
    rm -rf "$state/rootfs"
  fi
fi

# FROM debian:bookworm-slim finds it under the name Docker would pull it by.
"${private[@]}" image exists docker.io/library/debian:bookworm-slim ||
  "${private[@]}" tag "$base" docker.io/library/debian:bookworm-slim

echo "CONTAINERS_CONF=$state/containers.conf"
echo "CONTAINERS_STORAGE_CONF=$state/storage.conf"
echo "CONTAINERS_REGISTRIES_CONF=$state/registries.conf"
