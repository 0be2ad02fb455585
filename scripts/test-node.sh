#!/usr/bin/env bash
# The Node package: type check of index.d.ts, then every node:test suite.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/node-install.sh
echo "== node: tsc --noEmit"
(cd npm && npm run --silent typecheck)
echo "== node: node --test"
(cd npm && npm test --silent)
echo "== node: analytics under three process time zones (results must not change)"
for zone in America/New_York Asia/Tokyo; do
  (cd npm && TZ="$zone" node --test --test-reporter=dot test/analytics.test.mjs) || { echo "analytics failed under TZ=$zone" >&2; exit 1; }
done
