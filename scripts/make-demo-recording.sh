#!/usr/bin/env bash
# Regenerates devices/recordings/home-demo.wav, the recording `hearken demo`
# plays: the lines of devices/recordings/home-demo.txt spoken by espeak-ng,
# 16 kHz mono 16-bit, with 1.2 s of silence between them.
# Needs: espeak-ng and sox (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sox -n -r 16000 -c 1 -b 16 "$work/gap.wav" trim 0 1.2
parts=("$work/gap.wav")
i=0
while IFS= read -r line; do
    [ -n "$line" ] || continue
    espeak-ng -v en -s 165 -w "$work/$i.raw.wav" "$line"
    sox "$work/$i.raw.wav" -r 16000 -c 1 -b 16 "$work/$i.wav"
    parts+=("$work/$i.wav" "$work/gap.wav")
    i=$((i + 1))
done < devices/recordings/home-demo.txt
sox "${parts[@]}" devices/recordings/home-demo.wav
echo "wrote devices/recordings/home-demo.wav ($i utterances)" >&2
