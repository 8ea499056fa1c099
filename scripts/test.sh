#!/usr/bin/env bash
# Runs every test of the workspace. README's second command and .ci/run both call this, so
# whatever a test needs is installed here and nowhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
# --no-fail-fast: every test binary runs even when an earlier one fails; cargo still exits
# non-zero if any test failed.
cargo test --workspace --locked --no-fail-fast "$@"
