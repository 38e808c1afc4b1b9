#!/usr/bin/env python3
"""Reference log-mel features for hark's Smart Turn feature code.

Runs the model's own feature code (`_whisper_features.py` in the
`pipecat-ai==1.14.0` wheel that models/fetch.py caches in models/.cache/)
on a committed 16 kHz fixture, prepared exactly as pipecat prepares a turn
(the last 8 s, zeros before, in [-1, 1]), and writes the 80 x 800 features
as little-endian f32, row after row. `engine/src/speech/turn/features.rs`
compares its own features against this file.

Usage: python3 testdata/turn/make-reference.py   (needs numpy; run
models/fetch.py --only smart-turn first)
"""

import importlib.util
import sys
import tempfile
import wave
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WHEEL = ROOT / "models/.cache/pipecat_ai-1.14.0-py3-none-any.whl"
MEMBER = "pipecat/audio/turn/smart_turn/_whisper_features.py"
FIXTURES = [("speech/book_table.16k.wav", "book_table.16k.mel.f32")]


def load_features():
    if not WHEEL.exists():
        sys.exit(f"{WHEEL} is missing: run models/fetch.py --only smart-turn")
    tmp = Path(tempfile.mkdtemp()) / "_whisper_features.py"
    with zipfile.ZipFile(WHEEL) as z:
        tmp.write_bytes(z.read(MEMBER))
    spec = importlib.util.spec_from_file_location("_whisper_features", tmp)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


def main() -> None:
    features = load_features()
    for src, out in FIXTURES:
        with wave.open(str(HERE.parent / src)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        audio = pcm.astype(np.float32) / 32768.0
        n = 8 * 16000
        audio = audio[-n:] if audio.size > n else np.pad(audio, (n - audio.size, 0))
        mel = features(audio, do_normalize=True)
        assert mel.shape == (80, 800), mel.shape
        mel.astype("<f4").tofile(HERE / out)
        print(f"wrote {out}: {mel.shape}, range {mel.min():.3f}..{mel.max():.3f}")


if __name__ == "__main__":
    main()
