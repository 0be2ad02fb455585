#!/usr/bin/env bash
# The main job: the Node quickstart (wallets, counters) on the embedded folder store.
# Usage: bash scripts/demo.sh [folder]
set -euo pipefail
source "$(dirname "$0")/env.sh"
bash scripts/setup.sh
bash scripts/node-install.sh >/dev/null
node npm/examples/quickstart.mjs ${1:+"$1"}
