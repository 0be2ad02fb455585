#!/usr/bin/env bash
# Every test suite, in order; any failure stops the run with a non-zero exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
start=$(date +%s)
# Cargo's fingerprints of workspace crates ignore their path: with the shared target folder,
# artifacts built from another checkout with newer files would be taken as up to date.
find core bindings-node bindings-wasm -name '*.rs' -exec touch {} +
bash scripts/setup.sh
bash scripts/setup-browser.sh
export TALLY_BROWSER_REQUIRED=1
bash scripts/fmt.sh
bash scripts/lint.sh
echo "== layers: no import cycle between core modules, no core/src file over 600 lines"
python3 scripts/check-layers.py --self-test
python3 scripts/check-layers.py
bash scripts/s3-server.sh start
trap 'bash scripts/s3-server.sh stop' EXIT
source "${TALLY_S3_DIR:-$CARGO_TARGET_DIR/s3-server}/env"
export TALLY_S3_REQUIRED=1
bash scripts/test-rust.sh
bash scripts/sim.sh
bash scripts/test-s3.sh
bash scripts/build-wasm.sh
bash scripts/test-node.sh
bash scripts/package.sh --host
bash scripts/chaos.sh
echo "== demos: Rust example and Node quickstart"
cargo run --quiet --features tally-core/s3 --example demo -- "$CARGO_TARGET_DIR/demo-data" >/dev/null
bash scripts/demo.sh "$CARGO_TARGET_DIR/demo-node" >/dev/null
echo "== all suites passed in $(( $(date +%s) - start ))s (fmt, clippy, layers, rust tests, simulator, S3 on a local server, WASM package, node tests incl. golden fixtures and Chromium dashboard, the packed host platform package, chaos on S3 and inside s3db.js, demos)"
