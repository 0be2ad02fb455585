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
SUITES="test/docs-examples.test.mjs test/semantics.test.mjs"
run_pass() { # backend host
  echo "   - $2 database on the $1 store"
  (cd npm && TALLY_TEST_BACKEND=$1 TALLY_TEST_HOST=$2 node --test --test-concurrency=1 --test-reporter=dot $SUITES) || { echo "the $2 database on $1 failed" >&2; [ "$1" != s3 ] || bash scripts/s3-server.sh log; exit 1; }
}
echo "== node: the documentation's examples and the semantics suite, standalone and inside s3db.js 21.6.2"
run_pass memory s3db
echo "   - the analytics, lifecycle, concurrency and error suites inside s3db.js (memory store)"
(cd npm && TALLY_TEST_HOST=s3db node --test --test-concurrency=1 --test-reporter=dot test/analytics.test.mjs test/lifecycle.test.mjs test/concurrency.test.mjs test/errors.test.mjs) || { echo "suites inside s3db.js failed" >&2; exit 1; }
run_pass folder tally
run_pass folder s3db
if [ -n "${TALLY_S3_ENDPOINT:-}" ]; then
  run_pass s3 tally
  run_pass s3 s3db
elif [ -n "${TALLY_S3_REQUIRED:-}" ]; then
  echo "TALLY_S3_REQUIRED is set but no S3 server is running" >&2; exit 1
else
  echo "   (S3 pass skipped: no TALLY_S3_ENDPOINT; scripts/test.sh always runs it)"
fi
