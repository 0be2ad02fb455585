#!/usr/bin/env bash
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
