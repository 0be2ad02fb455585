#!/usr/bin/env bash
# Builds the npm packages the way napi-rs projects ship: one platform package per target
# (npm/platforms/<platform>/, `napi build --cross-compile` = cargo-zigbuild with zig from PyPI,
# glibc 2.17 baseline for the gnu targets, release profile `dist`: fat LTO, stripped) and the
# main package (JS, types, WASM, napi-rs's loader; no binary, no install script). Each binary
# is proven from its ELF (architecture, libc, newest glibc symbol) and by the smoke test
# (tests/package/smoke.mjs) run from the packed tarballs installed into an empty folder with
# --ignore-scripts, on a Node of the package's platform (scripts/foreign-node.sh: the host's on
# x64 glibc, qemu-user for arm64 and for musl). Prints a table.
#
#   bash scripts/package.sh          every platform (about 30 minutes cold on 2 cores)
#   bash scripts/package.sh --host   linux-x64-gnu only (the test command runs this)
#
# Tarballs land in $CARGO_TARGET_DIR/packages/. Sizes are limited: 10 MB packed per platform
# package, 1.5 MB for the main package.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
ALL=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
if [ "${1:-}" = "--host" ]; then TARGETS=(x86_64-unknown-linux-gnu); else TARGETS=("${ALL[@]}"); fi
tools="$HOME/.cache/tally"
dist="$CARGO_TARGET_DIR/packages"
out="$CARGO_TARGET_DIR/napi-out"
rm -rf "$dist" "$out" && mkdir -p "$dist" "$out" "$tools/bin"

echo "== package: tools (zig $ZIG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION from PyPI, rustup targets)"
# Both are prebuilt wheels on PyPI (pip checks their hashes), unpacked into one folder.
if [ "$("$tools/bin/zig" version 2>/dev/null)" != "$ZIG_VERSION" ] ||
  [ "$("$tools/bin/cargo-zigbuild" --version 2>/dev/null | awk '{print $2}')" != "$ZIGBUILD_VERSION" ]; then
  rm -rf "$tools/py"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$tools/py" "ziglang==$ZIG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
  ln -sf "$tools/py/ziglang/zig" "$tools/bin/zig"
  ln -sf "$tools/py/bin/cargo-zigbuild" "$tools/bin/cargo-zigbuild"
fi
export PATH="$tools/bin:$PATH"
rustup target add "${TARGETS[@]}" >/dev/null 2>&1
[ -x npm/node_modules/.bin/napi ] || (cd npm && npm install --no-audit --no-fund --loglevel=error)
[ -f npm/wasm/pkg/tally_wasm_bg.wasm ] || bash scripts/build-wasm.sh

platform_of() { # rust target -> napi-rs platform name
  local arch=${1%%-*} abi=${1##*-}
  [ "$arch" = x86_64 ] && arch=x64 || arch=arm64
  echo "linux-$arch-$abi"
}
# app NAME TARBALL...: an empty app folder with the smoke test, the tarballs installed into it
# without install scripts (extra npm flags after --).
app() {
  local dir="$dist/app-$1"; shift
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  echo '{"name":"app","version":"1.0.0","private":true,"type":"module"}' > "$dir/package.json"
  cp ../tests/package/smoke.mjs "$dir/"
  (cd "$dir" && npm install --loglevel=error --no-audit --no-fund --ignore-scripts "${flags[@]}" "$@" >/dev/null 2>install.log) ||
    { cat "$dir/install.log" >&2; exit 1; }
  echo "$dir"
}
kb() { echo $(( ($(stat -c %s "$1") + 1023) / 1024 )); }

cd npm
for target in "${TARGETS[@]}"; do
  p=$(platform_of "$target")
  spec=$target
  [ "${target##*-}" = gnu ] && spec="$target.2.17"
  echo "== package: napi build --cross-compile --target $spec --profile dist"
  node node_modules/@napi-rs/cli/dist/cli.js build --platform --profile dist -x --target "$spec" \
    --manifest-path ../bindings-node/Cargo.toml --package-json-path package.json \
    --target-dir "$CARGO_TARGET_DIR" -o "$out" --no-js --dts binding.d.ts >/dev/null 2>"$out/$p.log" ||
    { cat "$out/$p.log" >&2; exit 1; }
  cp "$out/tally.$p.node" "platforms/$p/" # what `napi artifacts` does, for a subset of targets
  cp ../LICENSE "platforms/$p/"
done
echo "== package: npm pack (prepack refuses a package without its binary, loader or WASM build)"
main=$(npm pack --silent --pack-destination "$dist" | tail -1)
echo "== package: publint --strict and @arethetypeswrong/cli on $main"
node_modules/.bin/publint run --strict "$dist/$main"
# node16 profile: Node 20 resolves through `exports` (node10 resolution is not a target). The
# one rule ignored is tally-ec/wasm being ESM-only: from CommonJS it is `await import()`.
node_modules/.bin/attw --profile node16 --ignore-rules cjs-resolves-to-esm --no-emoji --no-color --format table-flipped "$dist/$main"
rows=()
fail=0
for target in "${TARGETS[@]}"; do
  p=$(platform_of "$target")
  node_file="platforms/$p/tally.$p.node"
  tgz=$(cd "platforms/$p" && npm pack --silent --pack-destination "$dist" | tail -1)
  machine=$(readelf -h "$node_file" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}')
  needed=$(readelf -d "$node_file" | { grep -o 'Shared library: \[[^]]*\]' || true; } | tr '\n' ' ')
  glibc=$(objdump -T "$node_file" | { grep -o "GLIBC_[0-9.]*" || true; } | sort -uV | tail -1)
  libc=unknown
  # zig links musl binaries against plain `libc.so` (musl's loader takes every libc.* as itself).
  case "$needed" in *libc.musl*|*ld-musl*) libc=musl ;; *libc.so.6*) libc=glibc ;; *"[libc.so]"*) [ -z "$glibc" ] && libc=musl ;; esac
  want=${target##*-}; [ "$want" = gnu ] && want=glibc
  check="ok"
  [ "$libc" = "$want" ] || check="libc $libc, want $want"
  if [ "$libc" = glibc ] && [ "$(printf '%s\nGLIBC_2.17\n' "$glibc" | sort -V | tail -1)" != GLIBC_2.17 ]; then check="needs $glibc"; fi
  [ "$libc" = musl ] && [ -n "$glibc" ] && check="musl binary with glibc symbols"
  packed=$(kb "$dist/$tgz")
  [ "$(stat -c %s "$dist/$tgz")" -le 10000000 ] || check="$check; packed ${packed} KiB > 10 MB"
  # The smoke test from the tarballs, in an empty folder, without install scripts, on a Node
  # of the package's own platform (scripts/foreign-node.sh: qemu-user for arm64 and musl).
  cpu=x64; [ "${target%%-*}" = aarch64 ] && cpu=arm64
  # A package of another platform is a direct dependency here, so npm needs --force for it
  # (--os/--cpu/--libc only choose optional dependencies).
  foreign=(); [ "$p" = linux-x64-gnu ] || foreign=(--force)
  dir=$(app "$p" --os=linux --cpu="$cpu" --libc="$want" "${foreign[@]}" -- "$dist/$main" "$dist/$tgz")
  if ! runner=$(bash ../scripts/foreign-node.sh "$p"); then
    smoke="not run: no $p Node"; fail=1
  elif (cd "$dir" && $runner smoke.mjs > smoke.out 2>&1); then
    how=native; case "$runner" in *qemu*) how=qemu-user ;; esac
    version=$(cd "$dir" && $runner -p process.version) || version="?"
    smoke="passed ($how, Node $version)"
  else
    cat "$dir/smoke.out" >&2; smoke="FAILED"; fail=1
  fi
  [ "$check" = ok ] || fail=1
  rows+=("| $p | $tgz | $(kb "$node_file") KiB, packed $packed KiB | $machine | $libc | ${glibc:--} | $check | $smoke |")
done
# Without any platform package: tally-ec/wasm works, the native part fails with a clear error.
dir=$(app no-native --omit=optional -- "$dist/$main")
if (cd "$dir" && node smoke.mjs --no-native > smoke.out 2>&1); then nonative="passed"; else cat "$dir/smoke.out" >&2; nonative="FAILED"; fail=1; fi
main_kb=$(kb "$dist/$main")
[ "$(stat -c %s "$dist/$main")" -le 1500000 ] || { echo "the main package is ${main_kb} KiB packed (limit 1.5 MB)" >&2; fail=1; }
echo
echo "| platform | file | size | architecture | libc | newest glibc symbol | ELF check | smoke test |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo "| (main) | $main | packed $main_kb KiB | - | - | - | no binary, no install script | without a platform package: $nonative |"
[ "$fail" = 0 ] || { echo "package: a check failed" >&2; exit 1; }
