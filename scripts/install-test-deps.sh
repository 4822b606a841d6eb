#!/usr/bin/env bash
# Installs the local services the test suite starts on loopback: Redis, Prometheus, Alertmanager
# (with promtool and amtool) and Chromium for the burn-page browser test. Skips what is present.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages start their services on install; the tests start their own on other ports.
for svc in redis-server prometheus prometheus-alertmanager; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" >/dev/null 2>&1) || true
done
