#!/usr/bin/env bash
# The WASM package: tally-core must build for wasm32 without tokio or I/O; tally-wasm is built
# in release mode, bound with wasm-bindgen-cli (installed here at exactly the crate's version;
# wasm-pack is not used), shrunk with wasm-opt from npm's binaryen (Debian's 108 breaks the
# output), and placed in npm/wasm/pkg as the `tally-ec/wasm` entry.
set -euo pipefail
source "$(dirname "$0")/env.sh"
WB_VERSION=0.2.130
echo "== wasm: tally-core (no default features) for wasm32, then tally-wasm"
cargo build --quiet -p tally-core --no-default-features --target wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "== wasm: installing wasm-bindgen-cli $WB_VERSION (a few minutes, once per machine)"
  # Only the `wasm-bindgen` binary, and without the TLS stack its test runner downloads with.
  cargo install --quiet --no-default-features --bin wasm-bindgen wasm-bindgen-cli --version "$WB_VERSION"
fi
cargo build --quiet --release -p tally-wasm --target wasm32-unknown-unknown
out=npm/wasm/pkg
rm -rf "$out" && mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tally_wasm.wasm"
if [ ! -x npm/node_modules/.bin/wasm-opt ]; then
  (cd npm && npm install --silent --no-audit --no-fund --ignore-scripts)
fi
npm/node_modules/.bin/wasm-opt -Oz --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  "$out/tally_wasm_bg.wasm" -o "$out/tally_wasm_bg.opt.wasm"
mv "$out/tally_wasm_bg.opt.wasm" "$out/tally_wasm_bg.wasm"
raw=$(stat -c %s "$out/tally_wasm_bg.wasm")
gz=$(gzip -9 -c "$out/tally_wasm_bg.wasm" | wc -c)
echo "   tally_wasm_bg.wasm: $raw bytes, $gz gzipped"
