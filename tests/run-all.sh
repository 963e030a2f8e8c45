#!/usr/bin/env bash
# THE test command (README, CI):  bash tests/run-all.sh
#   1. tests/setup.sh (kcat, .venv with the Python clients + pytest, kafkajs)
#   2. cargo build --release            (target/release/riptide), and a layering check: the
#      broker library depends on no Kafka client and no load generator (cargo tree)
#   3. cargo test --workspace
#   4. cargo clippy --workspace --all-targets -- -D warnings
#   5. the callgrind regression bench (instruction counts vs bench/baseline/callgrind.json)
#   6. a short fuzz run: tests/fuzz.sh --dev 20 (build 1.5-3 min from scratch + 20 s per target)
#   7. the end-to-end suite (pytest, tests/e2e) against target/release/riptide
# Steps 3-7 all run even if one fails; the exit code is non-zero if any step failed.
# Extra arguments go to pytest (e.g. bash tests/run-all.sh -k kcat).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { echo; echo "===== $* ====="; }
failed=()

step "setup"
bash tests/setup.sh

step "cargo build --release"
cargo build --release
[ -x target/release/riptide ] || { echo "target/release/riptide was not built" >&2; exit 1; }
if cargo tree -p riptide-broker -e normal --prefix none | grep -E '^(rdkafka|riptide-loadgen) ' >&2; then
    echo "layering: riptide-broker depends on a client or the load generator (above); only cli/ may" >&2
    failed+=("layering")
fi

step "cargo test --workspace"
cargo test --workspace || failed+=("cargo test")

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings || failed+=("cargo clippy")

step "regression bench: callgrind instruction counts vs committed baseline"
bash bench/scripts/callgrind-regress.sh || failed+=("callgrind regression bench")

step "fuzz: short run of each target (tests/fuzz.sh --dev 20)"
# Bounded: the build (1.5-3 min from scratch), 20 s per target; the outer timeout catches a wedge.
timeout --signal=TERM --kill-after=30 600 bash tests/fuzz.sh --dev 20 || failed+=("fuzz")

step "end-to-end tests (pytest) against target/release/riptide"
export RIPTIDE_BIN="$ROOT/target/release/riptide"
export RIPTIDE_E2E_BROKER=riptide
set +e
(cd tests && timeout --signal=TERM --kill-after=30 1200 \
    "$ROOT/.venv/bin/python" -m pytest e2e "$@")
rc=$?
set -e
case "$rc" in
    0) ;;
    5) echo "pytest collected no tests" >&2; failed+=("e2e: no tests ran") ;;
    124|137) echo "pytest exceeded 1200 s and was stopped" >&2; failed+=("e2e: timeout") ;;
    *) failed+=("e2e (pytest exit $rc)") ;;
esac

if [ "${#failed[@]}" -gt 0 ]; then
    echo
    echo "FAILED steps: ${failed[*]}" >&2
    exit 1
fi
