#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, fetches the whisper
# model, runs every unit and integration test (real Mosquitto brokers, the
# device simulator, the real whisper and llama engines), then clippy and rustfmt.
# Respects CARGO_TARGET_DIR for a cached build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The binaries the integration tests run, built exactly as the tests' own
# helper builds them (same packages, same features), so it is a no-op there.
cargo build --locked -p hearken --bin hearken -p hearken-whisper --bin hearken-whisper -p hearken-llama --bin hearken-llama
# The speech and intent tests use the real models: the converted whisper tiny.en,
# SmolLM2-135M and Gemma 3 270M (cached outside the clone).
"${CARGO_TARGET_DIR:-target}/debug/hearken" models fetch
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
