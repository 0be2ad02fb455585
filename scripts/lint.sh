#!/usr/bin/env bash
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== clippy"
cargo clippy --workspace --all-targets --features tally-core/s3 -- -D warnings
echo "== rustdoc (broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc -p tally-core --no-deps --quiet
