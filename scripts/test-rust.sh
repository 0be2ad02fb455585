#!/usr/bin/env bash
# Rust tests of the whole workspace: conformance (memory, folder), semantics, exactly-once,
# crash, request-budget, property and bad-input suites.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== rust tests"
# The S3 suite runs in scripts/test-s3.sh; here it is left out so it does not run twice.
env -u TALLY_S3_ENDPOINT -u TALLY_S3_REQUIRED cargo test --workspace --features tally-core/s3
