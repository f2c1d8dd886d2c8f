#!/usr/bin/env bash
# Builds the image from Dockerfile.prebuilt with podman (no Docker engine here)
# and checks it from outside, as docs/docker.md says to run it:
# --memory 256m --cpus 0.5, two instances exchange an update through the
# published port, the HEALTHCHECK reports healthy, 20 instances' memory is
# measured, the relay survives a hostile pass with the 20 still playing, and
# `podman stop` ends the relay with its shutdown log and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
work="$PWD/.tmp/container"
mkdir -p "$work"
image=localhost/sova-relay:smoke
name=sova-relay-smoke-$$

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "smoke: installing podman from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc conmon netavark aardvark-dns containernetworking-plugins iptables uidmap debootstrap >/dev/null
fi

# crun refuses this machine's hybrid cgroups, and podman's default ulimits exceed
# the host's: a config of our own, so nothing under /etc is edited.
nofile=$(ulimit -Hn)
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=8192:8192"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$work/containers.conf"

# No registry is reachable: make debian:bookworm-slim from Debian's packages.
if ! podman image exists localhost/debian:bookworm-slim; then
  mirror=$(grep -hoE '^URIs: *http[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$mirror" ] ||
    mirror=$(grep -hoE '^deb +http[^ ]+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "smoke: debootstrap bookworm from $mirror"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >/dev/null
  # Trim what the official slim image leaves out too.
  rm -rf "$work/rootfs"/var/cache/apt/* "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/usr/share/doc/* \
    "$work/rootfs"/usr/share/man/* "$work/rootfs"/usr/share/locale/* "$work/rootfs"/usr/share/info/*
  tar -C "$work/rootfs" -c . | podman import - localhost/debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
fi

[ -x dist/sova-relay ] || npm run build

t0=$(date +%s.%N)
case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=amd64 ;; esac
podman build --format docker --pull=never --build-arg TARGETARCH="$arch" -f Dockerfile.prebuilt -t "$image" . >/dev/null
echo "smoke: image $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"

cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; }
# Not `grep -q`: it exits at the first match, podman logs then dies of SIGPIPE, and
# under pipefail the whole check fails although the line is there.
logs_have() { podman logs "$name" 2>&1 | grep -- "$1" >/dev/null; }
trap cleanup EXIT

port=$(bun -e \
  'const l = Bun.listen({hostname:"127.0.0.1",port:0,socket:{data(){}}}); console.log(l.port); l.stop(true)')
start=$(date +%s.%N)
# All test instances come from one address (the host, through podman's NAT), as an
# ensemble behind one router would: the defaults must let all 20 in.
podman run -d --name "$name" --memory 256m --cpus 0.5 -p "127.0.0.1:${port}:9090" "$image" >/dev/null
for _ in $(seq 1 100); do
  logs_have "Listening on" && break
  sleep 0.1
done
logs_have "Listening on" || { podman logs "$name"; echo "smoke: relay did not start"; exit 1; }
echo "smoke: listening $(echo "$(date +%s.%N) - $start" | bc | awk '{printf "%.2f s", $1}') after podman run"

bun scripts/smoke-client.ts "$port" 2

podman healthcheck run "$name" && echo "smoke: healthcheck: healthy"
[ "$(podman inspect "$name" --format '{{.State.Health.Status}}')" = healthy ]

# Memory with 20 instances connected, read from the container's cgroup.
mkfifo "$work/hold.$$"
bun scripts/smoke-client.ts "$port" 20 --hold < "$work/hold.$$" > "$work/hold.log" &
holder=$!
exec 7> "$work/hold.$$"
for _ in $(seq 1 100); do grep -q holding "$work/hold.log" && break; sleep 0.1; done
grep -q holding "$work/hold.log" || { cat "$work/hold.log"; echo "smoke: 20 instances did not register"; exit 1; }
rss=$(podman exec "$name" cat /proc/1/status | awk '/VmRSS/ {printf "%.1f MB", $2/1024}')
echo "smoke: with 20 instances: relay RSS $rss; cgroup $(podman stats --no-stream --format '{{.MemUsage}}' "$name")"

# A hostile pass (bench/attackers.ts: floods before registering, partial frames, churn,
# capabilities, connect floods, non-reading pingers) while the 20 stay connected: the
# relay must survive it inside its 256 MB and the 20 must still play afterwards.
bun bench/attackers.ts --port "$port" --duration 8 --one-address > "$work/attack.log"
state=$(podman inspect "$name" --format '{{.State.Running}} {{.State.OOMKilled}}')
[ "$state" = "true false" ] || {
  podman logs "$name" 2>&1 | tail -20
  echo "smoke: relay did not survive the hostile pass (running, OOM-killed: $state)"
  exit 1
}
echo "smoke: survived a hostile pass ($(tail -1 "$work/attack.log"));" \
  "cgroup $(podman stats --no-stream --format '{{.MemUsage}}' "$name")"
kill -USR1 "$holder"
for _ in $(seq 1 100); do grep -q "still playing" "$work/hold.log" && break; sleep 0.1; done
grep -q "still playing" "$work/hold.log" || {
  cat "$work/hold.log"
  echo "smoke: the 20 instances stopped playing after the hostile pass"
  exit 1
}
grep "still playing" "$work/hold.log"
podman healthcheck run "$name" >/dev/null || { echo "smoke: unhealthy after the hostile pass"; exit 1; }

# Stop while the 20 are connected: they must all be closed, the relay exit 0.
podman stop -t 10 "$name" >/dev/null
exec 7>&-
wait "$holder"
rm -f "$work/hold.$$"
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
podman logs "$name" 2>&1 | tail -3
logs_have "SIGTERM: shutting down, 20 instances connected" || {
  podman logs "$name" 2>&1 | grep -E "shutting down|registered|disconnected" | tail -30
  echo "smoke: no shutdown log with 20 instances"
  exit 1
}
logs_have "Shutdown complete" || { echo "smoke: no shutdown log"; exit 1; }
[ "$code" = 0 ] || { echo "smoke: exit code $code"; exit 1; }
echo "smoke: podman stop: clean shutdown, exit 0"
echo "smoke: passed in $(echo "$(date +%s.%N) - $t0" | bc | awk '{printf "%.1f s", $1}')"
