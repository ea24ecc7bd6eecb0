#!/usr/bin/env bash
# Runs every adoption guide's check (docs/adopt/check-*.py) against a throwaway Tessera: the
# real binary serving a fresh SQLite database on a free port, configured only through the
# environment, with the operator CLI sharing that environment.
#
#   bash docs/adopt/run-checks.sh [CHECK_TESSERA_BIN]     (default: target/debug/tessera)
#
# Needs Python 3 with the tessera-client package (pip install ./clients/python).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(realpath "${1:-${CHECK_TESSERA_BIN:-target/debug/tessera}}")"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

export CHECK_TESSERA_BIN="$bin"
export TESSERA_DATA_DIR="$dir"
export TESSERA_DATABASE__URL="sqlite://$dir/tessera.db"
export TESSERA_HTTP__BIND="127.0.0.1:$port"
export TESSERA_PUBLIC_URL="http://127.0.0.1:$port"
export CHECK_TESSERA_URL="$TESSERA_PUBLIC_URL"
export TESSERA_BOOTSTRAP_ADMIN_EMAIL="admin@example.com"
export TESSERA_BOOTSTRAP_ADMIN_PASSWORD="adoption checks admin password"
export CHECK_ADMIN_EMAIL="$TESSERA_BOOTSTRAP_ADMIN_EMAIL"
export CHECK_ADMIN_PASSWORD="$TESSERA_BOOTSTRAP_ADMIN_PASSWORD"
# Four platforms' checks log in from one address within a minute.
export TESSERA_RATE_LIMITS__LOGIN_PER_IP="600/min"
export TESSERA_LOG__LEVEL="warn"

"$bin" serve >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT

ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$CHECK_TESSERA_URL/readyz" >/dev/null 2>&1
}
for _ in $(seq 1 300); do
  if ready; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$dir/serve.log" >&2; exit 1; fi
  sleep 0.1
done
ready || { echo "Tessera did not become ready" >&2; cat "$dir/serve.log" >&2; exit 1; }

failed=0
passed=0
for check in docs/adopt/check-*.py; do
  echo "--- $check"
  if (cd docs/adopt && python3 "$(basename "$check")"); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "adoption checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
