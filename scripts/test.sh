#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, fetches the whisper
# model, runs every unit and integration test (real Mosquitto brokers, the
# device simulator, the real whisper and llama engines), a short run of every
# fuzz target, then clippy and rustfmt.
# Respects CARGO_TARGET_DIR for a cached build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# Everything, tests included, built exactly as the tests' own helper builds
# the binaries: one invocation, so whisper.cpp and llama.cpp are compiled
# once with the features `cargo test` resolves (a narrower `-p … --bin …`
# build resolves other features and compiles both again).
cargo build --workspace --all-targets --locked
# The speech and intent tests use the real models: the converted whisper tiny.en,
# SmolLM2-135M and Gemma 3 270M (cached outside the clone).
"${CARGO_TARGET_DIR:-target}/debug/hearken" models fetch
# Natural test speech (Kokoro-82M, Piper joe, room responses), pinned and cached
# outside the clone; the natural-voice test synthesizes its clips once per machine.
scripts/speech/fetch.sh >/dev/null
cargo test --workspace --locked
# Every fuzz target for 30 s (cargo-fuzz, libFuzzer; see docs/security.md).
scripts/fuzz.sh 30
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
