#!/usr/bin/env bash
# System packages the test suite needs beyond Python, from Debian: headless Chromium (the HTML
# report test) and systemd's `systemd-analyze` (tests/deploy verifies the systemd units with it).
# Installed when missing (CI runs as root); prints what it does, fails loudly if it cannot.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian) for the report rendering and systemd unit tests..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
command -v chromium
command -v systemd-analyze
