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
echo "== node: the documentation's examples and the semantics suite on the folder store and on S3"
(cd npm && TALLY_TEST_BACKEND=folder node --test --test-concurrency=1 --test-reporter=dot test/docs-examples.test.mjs test/semantics.test.mjs) || { echo "folder backend failed" >&2; exit 1; }
if [ -n "${TALLY_S3_ENDPOINT:-}" ]; then
  (cd npm && TALLY_TEST_BACKEND=s3 node --test --test-concurrency=1 --test-reporter=dot test/docs-examples.test.mjs test/semantics.test.mjs) || { echo "S3 backend failed" >&2; bash scripts/s3-server.sh log; exit 1; }
elif [ -n "${TALLY_S3_REQUIRED:-}" ]; then
  echo "TALLY_S3_REQUIRED is set but no S3 server is running" >&2; exit 1
else
  echo "   (S3 pass skipped: no TALLY_S3_ENDPOINT; scripts/test.sh always runs it)"
fi
