#!/usr/bin/env python3
"""Speaks test sentences with natural voices (Kokoro-82M, Piper joe) or
espeak-ng, optionally in a real room (impulse response) with pink noise at a
given SNR, into 16 kHz mono 16-bit WAVs. Run with the venv that
scripts/speech/fetch.sh makes; reads JSON lines on stdin:

  {"text": "turn on the light", "voice": "kokoro:af_heart", "out": "a.wav",
   "room": "Concrete Room", "snr_db": 10}

voice is kokoro:<style> (28 English styles: af_*, am_*, bf_*, bm_*),
piper:joe or espeak:<espeak voice>; room and snr_db are optional. Noise is
seeded from the text and voice, so the same line gives the same file.
Prints one JSON line per input: {"out", "seconds"} or {"out", "error"}.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hearken", "speech")
RATE = 16_000
PAD_S = 0.3


def read_wav(path):
    """A WAV as float mono samples at 16 kHz (sox converts whatever it is)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["sox", "-V1", path, "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", tmp.name],
                       check=True)
        with wave.open(tmp.name) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return data.astype(np.float32) / 32768.0


def write_wav(path, samples):
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


class Kokoro:
    def __init__(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(os.path.join(CACHE, "kokoro-v1.0.int8.onnx"), options)
        with open(os.path.join(CACHE, "kokoro-vocab.json")) as f:
            vocab = json.load(f)
        self.vocab = vocab.get("vocab", vocab)

    def say(self, text, style):
        language = "en-gb" if style.startswith("b") else "en-us"
        ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", language, text], check=True, capture_output=True,
                             text=True).stdout
        phonemes = " ".join(line.strip() for line in ipa.splitlines() if line.strip())
        phonemes = phonemes.replace("ɚ", "əɹ").replace("r", "ɹ")
        ids = [self.vocab[c] for c in phonemes if c in self.vocab]
        voices = np.fromfile(os.path.join(CACHE, "voices", f"{style}.bin"), dtype=np.float32).reshape(-1, 1, 256)
        style_row = voices[min(len(ids), len(voices) - 1)]
        audio = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": style_row,
                                        "speed": np.array([1.0], dtype=np.float32)})[0]
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            pcm = (np.clip(np.asarray(audio).reshape(-1), -1.0, 1.0) * 32767.0).astype(np.int16)
            with wave.open(tmp.name, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(24_000)
                w.writeframes(pcm.tobytes())
            return read_wav(tmp.name)


def piper(text):
    model = os.path.join(CACHE, "en_US-joe-medium.onnx")
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run([sys.executable, "-m", "piper", "-m", model, "-f", tmp.name], input=text, text=True,
                       check=True, capture_output=True)
        return read_wav(tmp.name)


def espeak(text, voice):
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "175", "-w", tmp.name, text], check=True)
        return read_wav(tmp.name)


def pink_noise(n, rng):
    """Pink (1/f) noise by shaping white noise's spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum))
    spectrum[1:] /= np.sqrt(freqs[1:])
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def in_room(speech, room, snr_db, seed):
    if room:
        impulse = read_wav(os.path.join(CACHE, "impulses", f"{room}.wav"))
        impulse = impulse / (np.max(np.abs(impulse)) + 1e-12)
        wet = np.convolve(speech, impulse)[: len(speech) + RATE // 2]
        speech = wet * (np.max(np.abs(speech)) / (np.max(np.abs(wet)) + 1e-12))
    if snr_db is not None:
        rng = np.random.default_rng(seed)
        voiced = speech[np.abs(speech) > 0.02]
        level = np.sqrt(np.mean(voiced**2)) if len(voiced) else 0.05
        speech = speech + pink_noise(len(speech), rng) * level / (10 ** (snr_db / 20))
    return speech


def main():
    kokoro = None
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            kind, _, name = job["voice"].partition(":")
            if kind == "kokoro":
                kokoro = kokoro or Kokoro()
                speech = kokoro.say(job["text"], name)
            elif kind == "piper":
                speech = piper(job["text"])
            elif kind == "espeak":
                speech = espeak(job["text"], name or "en")
            else:
                raise ValueError(f"unknown voice {job['voice']!r} (kokoro:<style>, piper:joe, espeak:<voice>)")
            pad = np.zeros(int(RATE * PAD_S), dtype=np.float32)
            speech = np.concatenate([pad, speech, pad])
            seed = int.from_bytes(hashlib.sha256(f"{job['text']}|{job['voice']}".encode()).digest()[:8], "little")
            speech = in_room(speech, job.get("room"), job.get("snr_db"), seed)
            write_wav(job["out"], speech)
            print(json.dumps({"out": job["out"], "seconds": round(len(speech) / RATE, 2)}), flush=True)
        except Exception as e:  # one bad line must not lose the others
            print(json.dumps({"out": job.get("out"), "error": str(e)}), flush=True)


if __name__ == "__main__":
    main()
