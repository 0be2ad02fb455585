#!/usr/bin/env bash
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== fmt"
cargo fmt --all -- --check
