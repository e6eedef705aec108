#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every unit and
# integration test (real Mosquitto brokers, the device simulator), and checks
# formatting and lints. Respects CARGO_TARGET_DIR for a cached build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets --locked
# The speech tests use the real converted whisper tiny.en (cached outside the clone).
cargo run --quiet --locked -p hearken -- models fetch
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
