#!/usr/bin/env bash
# Checks the deployment files: the Kubernetes manifests against the API schemas
# (kubernetes-validate, strict: unknown fields fail) and the systemd unit with
# `systemd-analyze verify`, where any warning fails. Usage: deploy/check.sh PATH-TO-TESSERA
set -euo pipefail
cd "$(dirname "$0")"
binary="$(realpath "${1:?usage: deploy/check.sh PATH-TO-TESSERA-BINARY}")"

kubernetes-validate --strict kubernetes/*.yaml

# The unit names the installed path; verify it against the binary just built.
unit_dir="$(mktemp -d)"
trap 'rm -rf "$unit_dir"' EXIT
sed "s#/usr/local/bin/tessera#${binary}#g" systemd/tessera.service > "$unit_dir/tessera.service"
if ! output="$(systemd-analyze verify "$unit_dir/tessera.service" 2>&1)" || [ -n "$output" ]; then
  echo "systemd-analyze verify: ${output:-failed}" >&2
  exit 1
fi
echo "systemd unit: verified"
