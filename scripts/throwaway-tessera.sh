# Sourced by the scripts that check a live Tessera (docs/adopt/run-checks.sh, the schemathesis
# run): `start_tessera BIN` serves a fresh SQLite database in a temporary folder on a free
# port, configured only through the environment, and waits until it is ready. It sets
# TESSERA_BASE_URL and TESSERA_SCRATCH (the temporary folder, which also holds serve.log) and
# stops the server and removes the folder when the calling script exits. Any TESSERA_*
# variable exported before the call is kept, so a script adds its own settings first.
# shellcheck shell=bash

start_tessera() {
  local bin port
  bin="$(realpath "$1")"
  TESSERA_SCRATCH="$(mktemp -d)"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  TESSERA_BASE_URL="http://127.0.0.1:$port"
  export TESSERA_DATA_DIR="$TESSERA_SCRATCH"
  export TESSERA_DATABASE__URL="sqlite://$TESSERA_SCRATCH/tessera.db"
  export TESSERA_HTTP__BIND="127.0.0.1:$port"
  export TESSERA_PUBLIC_URL="$TESSERA_BASE_URL"
  export TESSERA_LOG__LEVEL="${TESSERA_LOG__LEVEL:-warn}"

  "$bin" serve >"$TESSERA_SCRATCH/serve.log" 2>&1 &
  TESSERA_SERVER_PID=$!
  trap 'kill "$TESSERA_SERVER_PID" 2>/dev/null; wait "$TESSERA_SERVER_PID" 2>/dev/null; rm -rf "$TESSERA_SCRATCH"' EXIT

  local _
  for _ in $(seq 1 300); do
    if tessera_ready; then return 0; fi
    if ! kill -0 "$TESSERA_SERVER_PID" 2>/dev/null; then
      echo "Tessera exited before it was ready:" >&2
      cat "$TESSERA_SCRATCH/serve.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "Tessera did not become ready within 30 s:" >&2
  cat "$TESSERA_SCRATCH/serve.log" >&2
  return 1
}

tessera_ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$TESSERA_BASE_URL/readyz" >/dev/null 2>&1
}
