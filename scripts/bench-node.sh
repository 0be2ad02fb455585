#!/usr/bin/env bash
# Node benchmark (not part of the test command): Tally against s3db.js 21.6.2's own plugin in
# the same run, on the memory store and on the local S3 server, with requests per operation
# from the server's own log. Prints a Markdown table (npm/bench/plugin.mjs).
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/node-install.sh
bash scripts/s3-server.sh start
trap 'bash scripts/s3-server.sh stop' EXIT
source "$CARGO_TARGET_DIR/s3-server/env"
node npm/bench/plugin.mjs --store both --n "${BENCH_N:-50}"
