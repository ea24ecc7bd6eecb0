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

CHECK_TESSERA_BIN="$(realpath "${1:-${CHECK_TESSERA_BIN:-target/debug/tessera}}")"
export CHECK_TESSERA_BIN
export TESSERA_BOOTSTRAP_ADMIN_EMAIL="admin@example.com"
export TESSERA_BOOTSTRAP_ADMIN_PASSWORD="adoption checks admin password"
export CHECK_ADMIN_EMAIL="$TESSERA_BOOTSTRAP_ADMIN_EMAIL"
export CHECK_ADMIN_PASSWORD="$TESSERA_BOOTSTRAP_ADMIN_PASSWORD"
# Four platforms' checks log in from one address within a minute.
export TESSERA_RATE_LIMITS__LOGIN_PER_IP="600/min"

# shellcheck source=../../scripts/throwaway-tessera.sh
source scripts/throwaway-tessera.sh
start_tessera "$CHECK_TESSERA_BIN"
export CHECK_TESSERA_URL="$TESSERA_BASE_URL"

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
