#!/usr/bin/env bash
# Install the edgeleuk device runtime (no TensorFlow) into a virtual environment, then check it.
#
#   device/install.sh [--prefix DIR] [--package SPEC] [--wheels DIR] [--picamera] [--serve] [--no-doctor]
#
#   --prefix DIR     where the virtual environment goes (default: $EDGELEUK_HOME or ~/edgeleuk)
#   --package SPEC   what to install (default: the edgeleuk checkout this script sits in, with the
#                    package versions of its constraints.txt)
#   --wheels DIR     offline: install only from this folder (made by device/wheelhouse.sh)
#   --picamera       Raspberry Pi CSI camera support (Picamera2 from Raspberry Pi OS's apt)
#   --serve          the live view in a browser (run --serve; Starlette and uvicorn, about 6 MB)
#   --publish        results to an MQTT broker (run --publish; paho-mqtt, under 1 MB)
#   --no-doctor      skip the final 'edgeleuk doctor' check
#
# Idempotent: running it again reuses the environment and only installs what is missing.
# Installs wheels only (--only-binary for dependencies): no compiler is needed on the device.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${EDGELEUK_HOME:-$HOME/edgeleuk}"
package="$(dirname "$here")"
wheels=""
picamera=0
extras="runtime"
doctor=1
python="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --package) package="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    --picamera) picamera=1; shift ;;
    --serve) extras="$extras,serve"; shift ;;
    --publish) extras="$extras,publish"; shift ;;
    --no-doctor) doctor=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'edgeleuk install: %s\n' "$*"; }
die() { printf 'edgeleuk install: error: %s\n' "$*" >&2; exit 1; }

if [ -n "$wheels" ]; then
  ls "$wheels"/edgeleuk-*.whl >/dev/null 2>&1 || die "$wheels holds no edgeleuk wheel; make the folder with device/wheelhouse.sh"
fi

arch="$(uname -m)"
case "$arch" in
  x86_64|amd64|aarch64|arm64) ;;
  armv7l|armv6l) die "32-bit ARM ($arch): LiteRT publishes no wheels for it. Install a 64-bit OS (Raspberry Pi OS 64-bit)." ;;
  *) die "unsupported architecture $arch (x86_64 and aarch64 are supported)" ;;
esac

command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.10 or newer"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' \
  || die "Python $pyver: edgeleuk's device runtime needs Python 3.10 to 3.13 (LiteRT wheels)"
"$python" -c 'import venv, ensurepip' 2>/dev/null || die "Python's venv module is missing: sudo apt install python3-venv"

venv_args=()
if [ "$picamera" = 1 ]; then
  if ! "$python" -c 'import picamera2' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Picamera2 from apt"
      apt-get install -y python3-picamera2
    else
      die "Picamera2 is not installed: run 'sudo apt install -y python3-picamera2' (Raspberry Pi OS), then this script again"
    fi
  fi
  venv_args+=(--system-site-packages)  # Picamera2 and libcamera come from the OS, not from PyPI
fi

if [ ! -x "$prefix/venv/bin/python" ]; then
  say "creating $prefix/venv (Python $pyver, $arch)"
  mkdir -p "$prefix"
  "$python" -m venv "${venv_args[@]}" "$prefix/venv"
else
  say "reusing $prefix/venv"
fi

pip_args=(--quiet --disable-pip-version-check --only-binary=:all:)
if [ -n "$wheels" ]; then
  say "installing edgeleuk[$extras] from the wheels in $wheels (offline)"
  "$prefix/venv/bin/python" -m pip install "${pip_args[@]}" --no-index --find-links "$wheels" "edgeleuk[$extras]" \
    || die "a wheel is missing from $wheels: was it made for this machine ($arch, Python $pyver)? See device/wheelhouse.sh --help"
else
  # From a checkout: the working set it was tested with (constraints.txt), not whatever is newest;
  # a newer OpenCV alone grew the environment by 20 MB, past the 400 MB budget
  [ -f "$package/constraints.txt" ] && pip_args+=(-c "$package/constraints.txt")
  say "installing edgeleuk[$extras] from $package"
  "$prefix/venv/bin/python" -m pip install "${pip_args[@]}" --no-binary=edgeleuk "$package[$extras]"
fi

# Python < 3.12 seeds every venv with setuptools; the runtime does not need it (10 MB)
"$prefix/venv/bin/python" -m pip uninstall --quiet --yes setuptools >/dev/null 2>&1 || true

if "$prefix/venv/bin/python" -c 'import tensorflow' 2>/dev/null; then
  die "TensorFlow ended up in the device environment; it must not (report this)"
fi
size="$(du -sm "$prefix/venv" | cut -f1)"
say "environment: $prefix/venv, ${size} MB"

if [ "$doctor" = 1 ]; then
  "$prefix/venv/bin/edgeleuk" doctor
fi
say "done. Try: $prefix/venv/bin/edgeleuk run --source CLIP.avi   (or --camera 0)"
if [ "$extras" = "runtime" ]; then
  say "for the live view in a browser (run --serve), run this again with --serve"
fi
