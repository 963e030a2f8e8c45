#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz + libFuzzer, nightly) of the request decoders and of log
# recovery; see fuzz/README.md.
#
#   bash tests/fuzz.sh [--dev] [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  default 60; targets run one after another (never in parallel)
#   TARGET              request_decode, log_recovery (default: both)
#   --dev               build without optimisations: builds in about half the time, runs
#                       ~5x slower; what tests/run-all.sh uses for its short run
#
# Corpus: fuzz/corpus/<target>/ (local, grows with every run, not in git) plus the committed,
# read-only fuzz/seeds/<target>/ (valid frames, plans, and a minimised corpus of long runs).
# Crashes: libFuzzer writes the input to fuzz/artifacts/<target>/; the script prints it and exits
# non-zero. Each run's log: fuzz/logs/<target>.log. Prints exec counts and coverage per target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"

mode=(-O)
mode_name=release
secs=60
targets=()
for arg in "$@"; do
    case "$arg" in
        --dev) mode=(--dev); mode_name=dev ;;
        ''|*[!0-9]*) targets+=("$arg") ;;
        *) secs="$arg" ;;
    esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(request_decode log_recovery)

die() { echo "[fuzz] ERROR: $*" >&2; exit 2; }
cargo +nightly --version >/dev/null 2>&1 || die "no nightly toolchain (bash tests/setup.sh installs one)"
cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo-fuzz missing (bash tests/setup.sh installs it)"

# From inside fuzz/, so fuzz/.cargo/config.toml applies (see fuzz/README.md, librdkafka), and
# into fuzz/target whatever CARGO_TARGET_DIR says (sanitizer builds share nothing with the rest).
cd "$FUZZ"
export CARGO_TARGET_DIR="$FUZZ/target"
mkdir -p logs

start=$(date +%s)
echo "[fuzz] building ${targets[*]} ($mode_name, address sanitizer)"
build_log="logs/build.log"
if ! cargo +nightly fuzz build "${mode[@]}" >"$build_log" 2>&1; then
    tail -40 "$build_log" >&2
    die "build failed (full log: fuzz/$build_log)"
fi
built=$(date +%s)
echo "[fuzz] built in $((built - start)) s"

failed=()
summary=()
for t in "${targets[@]}"; do
    [ -f "fuzz_targets/$t.rs" ] || die "unknown target $t"
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t")
    [ -d "seeds/$t" ] && dirs+=("seeds/$t")
    log="logs/$t.log"
    extra=()
    # A recovery plan is used up by ~200 bytes; let libFuzzer try full-length ones at once.
    [ "$t" = log_recovery ] && extra=(-max_len=512 -len_control=0)
    echo "[fuzz] $t: ${secs} s, corpus ${dirs[*]}"
    set +e
    # libFuzzer counts -max_total_time from process start (corpus loading included); the outer
    # timeout only catches a wedged process.
    timeout --signal=TERM --kill-after=15 $((secs + 90)) \
        cargo +nightly fuzz run "${mode[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
        >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc)"
        failed+=("$t")
        echo "[fuzz] $t failed; the end of fuzz/$log:" >&2
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|deadly signal|timeout|out-of-memory' "$log" | head -20 >&2 || true
        tail -15 "$log" >&2
    fi
    summary+=("$(printf '%-15s %5ss %10s execs %7s/s  cov %6s  ft %7s  corpus %6s  %s' \
        "$t" "$secs" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

echo
echo "[fuzz] summary ($mode_name build, $((built - start)) s build, $(( $(date +%s) - start )) s total)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "[fuzz] crashes in: ${failed[*]} (inputs under fuzz/artifacts/<target>/; replay with" >&2
    echo "       cargo +nightly fuzz run <target> <file> from fuzz/)" >&2
    exit 1
fi
