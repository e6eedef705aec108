#!/usr/bin/env bash
# Regenerates tests/data/nlu_dev_asr.jsonl: every utterance of
# tests/data/nlu_dev.jsonl spoken by espeak-ng (as the tests synthesize
# speech), transcribed by hearken's whisper tiny.en, with the transcript as
# "text" and what was said as "spoken". Recognizer mistakes stay in: that is
# the point of the set.
# Needs: espeak-ng, sox, python3, a built target/debug/hearken and `hearken models fetch`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, subprocess, sys
work = sys.argv[1]
for i, line in enumerate(open("tests/data/nlu_dev.jsonl")):
    case = json.loads(line)
    raw, wav = f"{work}/{i:04d}.raw.wav", f"{work}/{i:04d}.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "175", "-w", raw, case["text"]], check=True)
    subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", wav], check=True)
PY
"${CARGO_TARGET_DIR:-target}/debug/hearken" transcribe --threads 2 $(ls "$work"/*.wav | grep -v raw.wav) > "$work/transcripts.jsonl"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
cases = [json.loads(l) for l in open("tests/data/nlu_dev.jsonl")]
transcripts = [json.loads(l) for l in open(f"{work}/transcripts.jsonl")]
assert len(cases) == len(transcripts)
with open("tests/data/nlu_dev_asr.jsonl", "w") as out:
    for case, t in zip(cases, transcripts):
        line = {"catalog": case["catalog"], "kind": case["kind"], "text": t["text"], "spoken": case["text"], "commands": case["commands"]}
        out.write(json.dumps(line) + "\n")
print(f"wrote {len(cases)} cases to tests/data/nlu_dev_asr.jsonl")
PY
