#!/bin/sh
# Installs the sova-relay binary for this machine from a release, checked
# against the release's SHA256SUMS before anything is installed.
#
#   curl -fsSL https://github.com/sova-org/sova-relay/releases/latest/download/install.sh | sh
#   sh install.sh [--version 0.1.0] [--prefix DIR] [--base-url URL]
#
#   --version V    a release (0.1.0 or v0.1.0); default: the latest   [SOVA_RELAY_VERSION]
#   --prefix DIR   the directory the binary goes into; default /usr/local/bin
#                  as root, ~/.local/bin otherwise                      [SOVA_RELAY_PREFIX]
#   --base-url U   where releases are, laid out as GitHub lays them out:
#                  U/latest/download/FILE and U/download/vV/FILE        [SOVA_RELAY_BASE_URL]
#
# What the machine is can be overridden (tests, or a box that misreports):
# SOVA_RELAY_OS (linux, darwin), SOVA_RELAY_ARCH (x64, arm64),
# SOVA_RELAY_LIBC (gnu, musl), SOVA_RELAY_AVX2 (1, 0).
set -eu

base_url=${SOVA_RELAY_BASE_URL:-https://github.com/sova-org/sova-relay/releases}
version=${SOVA_RELAY_VERSION:-latest}
prefix=${SOVA_RELAY_PREFIX:-}

die() {
  echo "sova-relay install: $*" >&2
  exit 1
}

usage_error() {
  echo "sova-relay install: $* (options: --version V, --prefix DIR, --base-url URL)" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case $1 in
    --version | --prefix | --base-url)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case $1 in
        --version) version=$2 ;;
        --prefix) prefix=$2 ;;
        --base-url) base_url=$2 ;;
      esac
      shift 2
      ;;
    --version=*) version=${1#*=}; shift ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --base-url=*) base_url=${1#*=}; shift ;;
    -h | --help)
      sed -n '2,16p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done

# --- which build ------------------------------------------------------------

os=${SOVA_RELAY_OS:-$(uname -s)}
case $os in
  Linux | linux) os=linux ;;
  Darwin | darwin) os=darwin ;;
  MINGW* | MSYS* | CYGWIN* | windows)
    die "on Windows, download sova-relay-windows-x64.exe from the release page and check it against SHA256SUMS" ;;
esac

arch=${SOVA_RELAY_ARCH:-$(uname -m)}
case $arch in
  x86_64 | amd64 | x64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
esac
# An x64 shell on Apple silicon (Rosetta) still gets the native build.
if [ -z "${SOVA_RELAY_ARCH:-}" ] && [ "$os" = darwin ] && [ "$arch" = x64 ] &&
  [ "$(sysctl -n hw.optional.arm64 2>/dev/null || true)" = 1 ]; then
  arch=arm64
fi

libc=${SOVA_RELAY_LIBC:-}
if [ -z "$libc" ] && [ "$os" = linux ]; then
  libc=gnu
  if ls /lib/ld-musl-* >/dev/null 2>&1 || { ldd --version 2>&1 || true; } | grep -qi musl; then libc=musl; fi
fi

avx2=${SOVA_RELAY_AVX2:-}
if [ -z "$avx2" ] && [ "$os" = linux ] && [ "$arch" = x64 ]; then
  avx2=0
  if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then avx2=1; fi
fi

case $os/$arch/$libc/$avx2 in
  linux/x64/gnu/1) asset=sova-relay-linux-x64 ;;
  linux/x64/gnu/0) asset=sova-relay-linux-x64-baseline ;;
  linux/x64/musl/1) asset=sova-relay-linux-x64-musl ;;
  linux/x64/musl/0) die "no build for musl on x64 without AVX2; build from source (README, Building from source)" ;;
  linux/arm64/gnu/*) asset=sova-relay-linux-arm64 ;;
  linux/arm64/musl/*) die "no build for musl on arm64; use the Docker image or build from source (README, Building from source)" ;;
  darwin/arm64/*) asset=sova-relay-darwin-arm64 ;;
  darwin/x64/*) asset=sova-relay-darwin-x64 ;;
  *) die "no sova-relay build for $os/$arch (there are builds for linux x64 and arm64, darwin x64 and arm64)" ;;
esac

# --- where from, where to -----------------------------------------------------

base_url=${base_url%/}
case $version in
  latest) from="$base_url/latest/download" ;;
  v*) from="$base_url/download/$version" ;;
  *) version=v$version; from="$base_url/download/$version" ;;
esac

if [ -z "$prefix" ]; then
  if [ "$(id -u)" = 0 ]; then prefix=/usr/local/bin; else prefix="${HOME:?HOME is not set; pass --prefix}/.local/bin"; fi
fi

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "needs curl or wget to download"
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
else
  die "needs sha256sum or shasum to check the download"
fi

# --- download, check, install ---------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sova-relay-install.XXXXXX") || die "cannot make a temporary directory"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

fetch "$from/SHA256SUMS" "$tmp/SHA256SUMS" 2>/dev/null || die "cannot download $from/SHA256SUMS (is there a release '$version'?)"
fetch "$from/$asset" "$tmp/$asset" 2>/dev/null || die "cannot download $from/$asset"

# sha256sum writes "HASH  NAME", or "HASH *NAME" in binary mode.
expected=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")
[ -n "$expected" ] || die "SHA256SUMS has no entry for $asset; nothing installed"
actual=$(sha256 "$tmp/$asset")
[ "$actual" = "$expected" ] || die "checksum mismatch for $asset (expected $expected, got $actual); nothing installed"

mkdir -p "$prefix" 2>/dev/null || die "cannot create $prefix (run as root or pass --prefix)"
dest="$prefix/sova-relay"
# A copy beside the destination, then a rename: a running relay keeps its old
# binary, and no half-written file ever sits at $dest.
cp "$tmp/$asset" "$dest.new.$$" 2>/dev/null || die "cannot write to $prefix (run as root or pass --prefix)"
chmod 0755 "$dest.new.$$"
mv -f "$dest.new.$$" "$dest" || { rm -f "$dest.new.$$"; die "cannot replace $dest"; }

installed=$("$dest" --version </dev/null 2>/dev/null) ||
  die "installed $dest, but it does not run on this machine ($asset)"
echo "installed $(printf '%s\n' "$installed" | head -n 1) to $dest"
case ":${PATH:-}:" in
  *":$prefix:"*) ;;
  *) echo "note: $prefix is not on your PATH" ;;
esac
