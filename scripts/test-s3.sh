#!/usr/bin/env bash
# S3 against the local server: the conformance suite, storage errors, request budgets checked
# against the server's own log, and the multi-process SIGKILL test. Starts the server unless
# one is already running (scripts/test.sh starts one for every suite), and fails if any S3
# test was skipped.
set -euo pipefail
source "$(dirname "$0")/env.sh"
started=""
if [ -z "${TALLY_S3_ENDPOINT:-}" ]; then
  bash scripts/s3-server.sh start
  started=1
  source "$CARGO_TARGET_DIR/s3-server/env"
fi
trap '[ -n "$started" ] && bash scripts/s3-server.sh stop' EXIT
echo "== rust tests on S3 ($TALLY_S3_ENDPOINT)"
out="$CARGO_TARGET_DIR/s3-server/rust-s3-tests.log"
if ! TALLY_S3_REQUIRED=1 cargo test --workspace --features tally-core/s3 --test s3 2>&1 | tee "$out"; then
  bash scripts/s3-server.sh log
  exit 1
fi
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$out" | tail -1)
if [ "${passed:-0}" -lt 12 ] || grep -q "skipped" "$out"; then
  echo "S3 suite incomplete: ${passed:-0} tests passed (expected 12) or some were skipped" >&2
  exit 1
fi
