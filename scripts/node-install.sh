#!/usr/bin/env bash
# Installs the npm package's dependencies, then builds the native addon for this machine
# (`npm run build`: napi build --platform over bindings-node into npm/native/). The package has
# no install script: users get prebuilt platform packages, building is a contributor step.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== node: npm install in npm/, then npm run build (napi build of bindings-node)"
(cd npm && npm install --no-audit --no-fund --loglevel=error && node scripts/build-addon.mjs)
ls npm/native/tally.*.node >/dev/null 2>&1 || { echo "the native addon was not built" >&2; exit 1; }
