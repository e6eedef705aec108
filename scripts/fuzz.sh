#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for SECONDS each (default 30), one
# after another, starting from the seeds in fuzz/seeds/<target> (the corpus
# it grows goes to fuzz/corpus/<target>, not tracked). Prints each target's
# executions and executions per second; exits non-zero on the first crash
# (libFuzzer leaves the input in fuzz/artifacts/<target>/).
# Installs cargo-fuzz when missing. Runs on the stable toolchain: libFuzzer's
# coverage instrumentation without a sanitizer (`--sanitizer none`); the
# code under test forbids unsafe, and Rust's own checks (bounds, overflow,
# debug assertions) stay on.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(catalog wav mqtt_ack engine_request model_output audit_verify)
fi
# Built once for all targets, beside the main build (so a cached
# CARGO_TARGET_DIR caches it too) but in a directory of its own.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
cargo fuzz build --sanitizer none --fuzz-dir fuzz
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="$(mktemp)"
    if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
    echo "fuzz: $target ok: ${seconds} s, ${runs} executions, ${rate} exec/s, coverage ${cov}"
    rm -f "$log"
done
