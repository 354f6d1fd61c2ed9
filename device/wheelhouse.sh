#!/usr/bin/env bash
# Collect every wheel the device runtime needs into one folder, on a machine with internet, for a
# microscope computer without it (copy the folder over, then: device/install.sh --wheels DIR).
#
#   device/wheelhouse.sh DIR [--arch aarch64|x86_64] [--python 3.11] [--glibc 2.36]
#
#   --arch     the device's CPU (default: this machine's). Raspberry Pi 4/5 with a 64-bit OS: aarch64
#   --python   the device's Python (default 3.11: Raspberry Pi OS and Debian 12 "bookworm")
#   --glibc    the device's C library, newest manylinux tag to accept (default 2.36: bookworm)
#
# Wheels only: nothing is compiled, here or on the device. edgeleuk's own wheel is built from the
# checkout this script sits in.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir=""
arch="$(uname -m)"
pyver="3.11"
glibc="2.36"
python="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --python) pyver="$2"; shift 2 ;;
    --glibc) glibc="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "wheelhouse.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) dir="$1"; shift ;;
  esac
done

die() { printf 'edgeleuk wheelhouse: error: %s\n' "$*" >&2; exit 1; }
[ -n "$dir" ] || die "name the folder to fill: device/wheelhouse.sh DIR [--arch aarch64]"
case "$arch" in
  x86_64|amd64) arch=x86_64 ;;
  aarch64|arm64) arch=aarch64 ;;
  armv7l|armv6l) die "32-bit ARM ($arch): LiteRT publishes no wheels for it; use a 64-bit OS" ;;
  *) die "unsupported architecture $arch (x86_64 and aarch64 are supported)" ;;
esac
[[ "$pyver" =~ ^3\.([0-9]+)$ ]] || die "--python wants 3.N, not $pyver"
[[ "$glibc" =~ ^2\.([0-9]+)$ ]] || die "--glibc wants 2.N, not $glibc"
glibc_minor="${BASH_REMATCH[1]}"

# pip matches --platform tags exactly: list every manylinux tag the device's glibc accepts.
platforms=(--platform "manylinux2014_$arch")
for ((minor = 17; minor <= glibc_minor; minor++)); do
  platforms+=(--platform "manylinux_2_${minor}_$arch")
done

mkdir -p "$dir"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$dir" "$(dirname "$here")"
wheel="$(ls -t "$dir"/edgeleuk-*.whl | head -1)"
# the working set the checkout was tested with (constraints.txt), as install.sh installs it
"$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: "${platforms[@]}" \
  --python-version "$pyver" --implementation cp -c "$(dirname "$here")/constraints.txt" --dest "$dir" "$wheel[runtime,serve,publish]"
printf 'edgeleuk wheelhouse: %s: %d wheels, %s, for Python %s on %s (glibc %s)\n' \
  "$dir" "$(ls "$dir"/*.whl | wc -l)" "$(du -sh "$dir" | cut -f1)" "$pyver" "$arch" "$glibc"
echo "edgeleuk wheelhouse: on the device: device/install.sh --wheels $dir"
