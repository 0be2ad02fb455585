#!/usr/bin/env bash
# Debian's chromium for the dashboard test (playwright-core drives it; `npx playwright install`
# cannot download browsers here). Installs it once; needs root or sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "== browser: installing Debian's chromium"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
