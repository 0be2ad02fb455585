#!/usr/bin/env bash
# The local S3 server for tests: moto 5.2.5 from PyPI in a venv outside the clone, behind
# tests/s3/moto_serial.py (one lock per request, a request log, an access-key check).
#   bash scripts/s3-server.sh start   # installs if needed, starts on a free loopback port,
#                                     # writes the environment to $TALLY_S3_DIR/env
#   bash scripts/s3-server.sh stop    # stops it
#   bash scripts/s3-server.sh log     # prints the server's own output (for failed tests)
set -euo pipefail
source "$(dirname "$0")/env.sh"
S3VENV="${S3VENV:-$HOME/.cache/tally/s3-venv}"
export TALLY_S3_DIR="${TALLY_S3_DIR:-$CARGO_TARGET_DIR/s3-server}"
case "${1:-start}" in
  start)
    if ! "$S3VENV/bin/python" -c 'import moto.server' 2>/dev/null; then
      echo "== s3: installing moto[server]==5.2.5 into $S3VENV"
      rm -rf "$S3VENV"
      python3 -m venv "$S3VENV"
      "$S3VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
    fi
    bash "$0" stop >/dev/null 2>&1 || true
    mkdir -p "$TALLY_S3_DIR"
    : > "$TALLY_S3_DIR/requests.jsonl"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    TALLY_S3_LOG="$TALLY_S3_DIR/requests.jsonl" TALLY_S3_KEYS="tally-test,test" \
      nohup "$S3VENV/bin/python" tests/s3/moto_serial.py "$port" 127.0.0.1 > "$TALLY_S3_DIR/server.log" 2>&1 &
    echo $! > "$TALLY_S3_DIR/pid"
    for _ in $(seq 200); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        # The bucket the Node suites use (an unsigned request; moto accepts it).
        python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$port/tally-node', method='PUT'))" >/dev/null
        cat > "$TALLY_S3_DIR/env" <<ENV
export TALLY_S3_ENDPOINT=http://127.0.0.1:$port
export TALLY_S3_LOG=$TALLY_S3_DIR/requests.jsonl
export TALLY_S3_ACCESS_KEY=tally-test
export TALLY_S3_SECRET_KEY=tally-test-secret
ENV
        echo "== s3: moto (serialized) ready on 127.0.0.1:$port (pid $(cat "$TALLY_S3_DIR/pid"))"
        exit 0
      fi
      kill -0 "$(cat "$TALLY_S3_DIR/pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "s3: the server did not start; its output:" >&2
    cat "$TALLY_S3_DIR/server.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$TALLY_S3_DIR/pid" ]; then
      kill "$(cat "$TALLY_S3_DIR/pid")" 2>/dev/null || true
      rm -f "$TALLY_S3_DIR/pid" "$TALLY_S3_DIR/env"
    fi
    ;;
  log)
    echo "---- S3 server output ($TALLY_S3_DIR/server.log, last 60 lines) ----"
    tail -n 60 "$TALLY_S3_DIR/server.log" 2>/dev/null || true
    ;;
  *) echo "usage: $0 start|stop|log" >&2; exit 2 ;;
esac
