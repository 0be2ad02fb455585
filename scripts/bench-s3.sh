#!/usr/bin/env bash
# Benchmark on the local S3 server (release build): add throughput, sync-add and
# consolidation latency, and requests per operation. Not part of the test command.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/s3-server.sh start
trap 'bash scripts/s3-server.sh stop' EXIT
source "$CARGO_TARGET_DIR/s3-server/env"
export TALLY_S3_URL="http://${TALLY_S3_ACCESS_KEY}:${TALLY_S3_SECRET_KEY}@${TALLY_S3_ENDPOINT#http://}/tally-node/bench"
cargo run --quiet --release -p tally-core --features s3 --example bench_s3
