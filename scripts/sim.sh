#!/usr/bin/env bash
# The deterministic simulator (core/tests/sim.rs): many engines over one faulty simulated
# store, then an audit of every mutation. TALLY_SIM_SEEDS=N seeds (default 1500, about five
# minutes on 2 cores: seeds run on every core), TALLY_SIM_FIRST=K the first seed, TALLY_SIM_SEED=S replays one seed
# with its trace, TALLY_SIM_FAULTS=before,after,late,dup,replay,read,crash,clock,gc,delete,carry limits what is
# injected. Prints `simulation: N seeds, P passed, F failed` last; fails on any failure.
set -euo pipefail
source "$(dirname "$0")/env.sh"
echo "== simulation"
bin=$(cargo test -q --workspace --features tally-core/s3 --test sim --no-run --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "sim":
        print(m["executable"])')
if [ -z "$bin" ]; then
  echo "simulator binary not found" >&2
  exit 1
fi
TALLY_SIM_SEEDS="${TALLY_SIM_SEEDS:-1500}" "$bin"
