#!/bin/sh
# The Debian packages the tests drive for real: a headless browser (chromium, chromium-driver), an MQTT
# broker (mosquitto), a PostgreSQL server (postgresql), openssl for the TLS test's certificates and, on
# x86-64, QEMU's user mode (qemu-user) to run onnxruntime under another CPU's int8 kernels.
# Installs what is missing with apt-get, as root or through passwordless sudo (CI's fresh machine).
# Where they are missing and cannot be installed (no root, no sudo, no apt-get, or apt-get failed) it
# exits 1, so the test command cannot pass by skipping those tests; EDGELEUK_SKIP_SYSTEM_TESTS=1 lets
# a developer without root run the rest (those tests then skip, saying why).
root="${EDGELEUK_SYSTEM_ROOT:-}"  # tests point this at an empty folder to see what a fresh machine gets
need=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need="$need chromium"
command -v chromedriver >/dev/null 2>&1 || need="$need chromium-driver"
command -v mosquitto >/dev/null 2>&1 || [ -x "$root/usr/sbin/mosquitto" ] || need="$need mosquitto"
ls "$root"/usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$need postgresql"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ "$(uname -m)" != x86_64 ] || command -v qemu-x86_64 >/dev/null 2>&1 || need="$need qemu-user"
[ -z "$need" ] && exit 0
cannot() {
  if [ "${EDGELEUK_SKIP_SYSTEM_TESTS:-}" = 1 ]; then
    echo "system-packages: cannot install$need ($1): the browser, broker and database tests will skip"
    exit 0
  fi
  echo "system-packages: cannot install$need ($1); run this as root, or set EDGELEUK_SKIP_SYSTEM_TESTS=1 to let those tests skip" >&2
  exit 1
}
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  cannot "not root, no passwordless sudo"
fi
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get"
echo "system-packages: installing$need"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null; }; then
  echo "system-packages: apt-get could not install$need" >&2
  exit 1
fi
exit 0
