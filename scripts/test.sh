#!/usr/bin/env bash
# Runs every test of the workspace. README's second command and .ci/run both call this, so
# whatever a test needs is installed here and nowhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
cargo test --workspace --locked "$@"
