#!/usr/bin/env bash
# Runs every test of the workspace (as root: the integration tests start real
# containers). Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
