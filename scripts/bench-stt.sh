#!/usr/bin/env bash
# Speech-to-text benchmark: hearken-whisper vs faster-whisper (the engine behind
# Home Assistant's wyoming-faster-whisper) on the same tiny.en weights, same
# thread count, int8, beam 1. faster-whisper goes into a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv=${FASTER_WHISPER_VENV:-${TMPDIR:-/tmp}/hearken-faster-whisper-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import faster_whisper' 2>/dev/null || "$venv/bin/pip" install -q faster-whisper
cargo build --release --locked -p hearken-cli -p hearken-whisper
hearken=${CARGO_TARGET_DIR:-target}/release/hearken
"$hearken" models fetch
"$hearken" bench vad
"$hearken" bench stt --faster-whisper-python "$venv/bin/python" --threads "${THREADS:-2}" "$@"
