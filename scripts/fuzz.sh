#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds each (default 10: a smoke run) and prints one line
# per target: executions, executions per second, crashes. Exits non-zero on any crash.
#   scripts/fuzz.sh [SECS] [target…]
#   RUNS=10000000 scripts/fuzz.sh 3600    # stop each target after 10 M executions (or SECS)
# Targets: request, attachment, inline (crates/validation/fuzz), manifest (crates/core-comfyui/fuzz).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain build them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(request attachment inline manifest)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
    case $t in
        request | attachment | inline) dir=crates/validation/fuzz ;;
        manifest) dir=crates/core-comfyui/fuzz ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$dir/corpus/$t"
    log=$(mktemp)
    # -O: optimised (as released); address sanitizer on (cargo-fuzz's default).
    limit=(-max_total_time="$secs")
    if [[ -n ${RUNS:-} ]]; then
        limit+=(-runs="$RUNS")
    fi
    if (cd "$dir" && cargo fuzz run -O "$t" "corpus/$t" -- "${limit[@]}" -print_final_stats=1) >"$log" 2>&1; then
        crashes=0
    else
        crashes=1
        status=1
        tail -40 "$log" >&2
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    echo "fuzz $t: ${runs} executions (${rate}/s), ${crashes} crashes"
    rm -f "$log"
done
exit $status
