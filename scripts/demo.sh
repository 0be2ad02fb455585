#!/usr/bin/env bash
# The main job: the demo on the embedded folder store.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/setup.sh
cargo run --quiet -p tally-core --example demo -- "${1:-$CARGO_TARGET_DIR/demo-data}"
