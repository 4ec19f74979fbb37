#!/usr/bin/env bash
# System packages the test suite needs beyond Python, from Debian: headless Chromium (the HTML
# report test), systemd's `systemd-analyze` (tests/deploy verifies the systemd units with it) and
# redis-server (the Redis live store is tested against a real server; PyPI's redis-server wheels
# stop at Python 3.9).
# Installed when missing (CI runs as root); prints what it does, fails loudly if it cannot.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian) for the report rendering, systemd unit and Redis tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
command -v chromium
command -v systemd-analyze
command -v redis-server
