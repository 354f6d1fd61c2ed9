#!/usr/bin/env bash
# Make a local Debian bookworm base image from Debian's own packages (debootstrap), for a machine
# that reaches a Debian mirror but no container registry: an air-gapped lab, this project's CI.
# Where Docker Hub is reachable, skip this: device/Dockerfile uses debian:bookworm-slim by default.
#
#   sudo device/docker-base.sh [--arch amd64|arm64] [--tag TAG] [--mirror URL]
#   docker build --network host --build-arg BASE=TAG -f device/Dockerfile -t edgeleuk-runtime .
#
# Like the official slim image, documentation, man pages, locales and apt lists are left out.
# --arch arm64 on an x86 machine needs qemu-user-static (apt install qemu-user-static).
set -euo pipefail

arch="$(dpkg --print-architecture)"
tag=""
mirror="http://deb.debian.org/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "docker-base.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$arch" in  # Debian's names; uname's are accepted too, as in wheelhouse.sh
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
esac
tag="${tag:-edgeleuk/bookworm-slim:$arch}"

die() { printf 'docker-base.sh: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt install debootstrap"
command -v docker >/dev/null || die "docker is missing"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running?)"

root="$(mktemp -d)"
chmod 755 "$root"  # it becomes the image's /: mktemp made it 0700
trap 'rm -rf "$root"' EXIT
echo "docker-base.sh: debootstrap bookworm ($arch) from $mirror"
debootstrap --variant=minbase --arch="$arch" bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; die "debootstrap failed (full log: $root.log)"; }
rm -f "$root.log"

# What the official slim image does: keep dpkg from installing docs later, and drop them now.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$root"/usr/share/{man,info}/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/lib/apt/lists/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"

tar -C "$root" --numeric-owner -c . | docker import --platform "linux/$arch" - "$tag" >/dev/null
echo "docker-base.sh: $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
