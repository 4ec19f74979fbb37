#!/usr/bin/env bash
# System packages the test suite needs beyond Python: headless Chromium for the HTML report test.
# Installed when missing (CI runs as root); prints what it does, fails loudly if it cannot.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)" >&2
  exit 1
fi
echo "installing chromium (Debian) for the report rendering test..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium
