# Shared settings for the step scripts: one target folder outside the clone, so repeated
# CI runs on this machine reuse compiled crates.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
