#!/usr/bin/env bash
# CI regression bench: counts instructions (callgrind "Ir") of deterministic scenarios (CRC-32C
# over 16 KiB, Produce request encode/decode with kafka-protocol, storage::validate_batches) and
# compares them with the committed baseline. Instruction counts do not depend on machine load.
#
#   bench/scripts/callgrind-regress.sh             # compare; exit 1 on a regression
#   bench/scripts/callgrind-regress.sh --update    # rewrite bench/baseline/callgrind.json
#   THRESHOLD_PCT=5 ITERATIONS=200 bench/scripts/callgrind-regress.sh
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"
update=0
[ "${1:-}" = "--update" ] && update=1
threshold="${THRESHOLD_PCT:-10}"
iterations="${ITERATIONS:-100}"
baseline="bench/baseline/callgrind.json"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"

command -v valgrind >/dev/null || { echo "callgrind-regress: valgrind not installed (apt-get install valgrind)" >&2; exit 2; }
cargo build --quiet --release -p riptide-bench --bin callgrind-bench
bin="$target_dir/release/callgrind-bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

current="$work/current.json"
{
    printf '{\n  "iterations": %s,\n  "scenarios": {\n' "$iterations"
    first=1
    for scenario in $("$bin" list); do
        out="$work/callgrind.$scenario.out"
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            --toggle-collect='*run_measured*' \
            "$bin" run "$scenario" --iterations "$iterations" >/dev/null 2>"$work/valgrind.$scenario.log" \
            || { cat "$work/valgrind.$scenario.log" >&2; echo "callgrind-regress: $scenario failed" >&2; exit 2; }
        ir="$(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
        if [ -z "$ir" ] || [ "$ir" = "0" ]; then
            echo "callgrind-regress: no instructions collected for $scenario (toggle-collect missed run_measured?)" >&2
            exit 2
        fi
        [ $first -eq 1 ] || printf ',\n'
        printf '    "%s": %s' "$scenario" "$ir"
        first=0
    done
    printf '\n  }\n}\n'
} > "$current"

if [ $update -eq 1 ] || [ ! -f "$baseline" ]; then
    mkdir -p "$(dirname "$baseline")"
    cp "$current" "$baseline"
    echo "callgrind-regress: baseline written to $baseline"
    cat "$baseline"
    exit 0
fi
"$bin" compare --baseline "$baseline" --current "$current" --threshold-pct "$threshold"
