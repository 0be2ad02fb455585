#!/usr/bin/env bash
# The Node package: type check of index.d.ts, then every node:test suite.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/node-install.sh
echo "== node: tsc --noEmit"
(cd npm && npm run --silent typecheck)
echo "== node: node --test"
(cd npm && npm test --silent)
