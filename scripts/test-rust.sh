#!/usr/bin/env bash
# Rust tests of the whole workspace: conformance (memory, folder), semantics, exactly-once,
# crash, request-budget, property and bad-input suites.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== rust tests"
cargo test --workspace
