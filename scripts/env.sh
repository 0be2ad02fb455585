# Shared settings for the step scripts: one target folder outside the clone, so repeated
# CI runs on this machine reuse compiled crates.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The host triple named explicitly, as `napi build` names it: cargo then keeps one set of
# artifacts (target/<triple>/) for the tests and the addon instead of compiling every crate
# twice. Builds for other targets (wasm32, the packages) pass their own --target.
if [ -z "${CARGO_BUILD_TARGET:-}" ]; then
  CARGO_BUILD_TARGET=$(rustc -vV | sed -n 's/^host: //p')
  [ -n "$CARGO_BUILD_TARGET" ] || { echo "env.sh: cannot tell the host triple from rustc -vV" >&2; exit 1; }
  export CARGO_BUILD_TARGET
fi
