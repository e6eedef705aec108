#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every unit and
# integration test (real Mosquitto brokers, the device simulator), and checks
# formatting and lints. Respects CARGO_TARGET_DIR for a cached build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
