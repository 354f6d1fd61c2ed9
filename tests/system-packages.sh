#!/bin/sh
# The Debian packages the tests drive for real: a headless browser (chromium, chromium-driver), an MQTT
# broker (mosquitto), a PostgreSQL server (postgresql) and openssl for the TLS test's certificates.
# Installs what is missing with apt-get (as root, or through passwordless sudo); where it cannot, says
# so and the tests that need them skip with the reason. Always exits 0.
need=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need="$need chromium"
command -v chromedriver >/dev/null 2>&1 || need="$need chromium-driver"
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$need postgresql"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "system-packages: cannot install$need (not root, no passwordless sudo): the browser, broker and database tests will skip"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: no apt-get to install$need: the browser, broker and database tests will skip"
  exit 0
fi
echo "system-packages: installing$need"
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null \
  || echo "system-packages: apt-get could not install$need: the browser, broker and database tests will skip"
exit 0
