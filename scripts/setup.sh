#!/usr/bin/env bash
# Installs what the build needs: the pinned toolchain's wasm32 target and the crates.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== setup: toolchain $(rustc --version), wasm32 target, crates"
rustup target add wasm32-unknown-unknown >/dev/null
cargo fetch --quiet
