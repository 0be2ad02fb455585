#!/usr/bin/env bash
# Installs the npm package's dependencies and builds the native addon (npm's install script).
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== node: npm install in npm/ (builds the addon: cargo build -p tally-node)"
(cd npm && npm install --no-audit --no-fund --loglevel=error)
test -f npm/native/tally.linux-x64-gnu.node || { echo "the native addon was not built" >&2; exit 1; }
