#!/usr/bin/env bash
# Chaos on the local S3 server: core/tests/chaos.rs through tests/chaos/fault_proxy.py (six
# processes, SIGKILLs, the five faults), then the audit; then the same inside s3db.js
# databases (npm/test/support/chaos-s3db.mjs: three Node processes, host records). Needs the server (scripts/test.sh
# starts it; alone, this script starts one). TALLY_CHAOS_ADDS sets the number of adds
# (default 5,000), TALLY_CHAOS_RATE the per-mille rate of each fault (default 25).
set -euo pipefail
source "$(dirname "$0")/env.sh"
dir="${TALLY_S3_DIR:-$CARGO_TARGET_DIR/s3-server}"
started=""
if [ -z "${TALLY_S3_ENDPOINT:-}" ]; then
  bash scripts/s3-server.sh start
  started=1
  source "$dir/env"
fi
upstream="${TALLY_S3_ENDPOINT##*:}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 tests/chaos/fault_proxy.py "$port" "$upstream" > "$dir/proxy.log" 2>&1 &
proxy_pid=$!
trap 'kill $proxy_pid 2>/dev/null || true; [ -n "$started" ] && bash scripts/s3-server.sh stop' EXIT
for _ in $(seq 100); do
  grep -q "fault proxy on" "$dir/proxy.log" 2>/dev/null && break
  sleep 0.1
done
echo "== chaos: 6 processes through the fault proxy (127.0.0.1:$port) in front of $TALLY_S3_ENDPOINT"
out="$dir/chaos.log"
if ! TALLY_CHAOS_PROXY="http://127.0.0.1:$port" TALLY_S3_REQUIRED=1 \
    cargo test --workspace --features tally-core/s3 --test chaos -- --nocapture --test-threads=1 2>&1 | tee "$out"; then
  tail -n 30 "$dir/proxy.log"
  exit 1
fi
grep -q "^chaos: applied twice 0;" "$out" || { echo "the chaos audit did not run" >&2; exit 1; }
echo "== chaos inside s3db.js: 3 Node processes with s3db.js 21.6.2 databases through the same proxy"
bash scripts/node-install.sh >/dev/null
if ! (cd npm && TALLY_CHAOS_PROXY="http://127.0.0.1:$port" node test/support/chaos-s3db.mjs); then
  tail -n 30 "$dir/proxy.log"
  exit 1
fi
