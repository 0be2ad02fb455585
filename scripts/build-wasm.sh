#!/usr/bin/env bash
# The pure core must build for the browser without tokio or any I/O backend.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== wasm32 build of tally-core (no default features) and tally-wasm"
cargo build -p tally-core --no-default-features --target wasm32-unknown-unknown
cargo build -p tally-wasm --target wasm32-unknown-unknown
