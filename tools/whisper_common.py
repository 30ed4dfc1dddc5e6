"""Shared by the modules of tools/whisper_ct2.py (Whisper tiny.en tooling): paths, the check
clips, WAV reading and transformers' log-mel front end, special ids, prompt stripping, atomic
writes, onnxruntime sessions and loading the converted transformers model.
"""
from __future__ import annotations

import json
import os
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VOXQ_CACHE", ROOT / ".cache"))
WDIR = CACHE / "whisper" / "tiny.en"
CT2_DIR = WDIR / "ct2"
HF_DIR = WDIR / "hf"
ONNX_DIR = WDIR / "onnx"
REF_DIR = WDIR / "ref"
SPEECH = CACHE / "speech"

# Three real English clips used by the checks (Allison prompts + a LibriVox clip that
# tools/setup_whisper.sh copies out of pocketsphinx-testdata).
CHECK_CLIPS = [
    SPEECH / "allison/en/agent-alreadyon.wav",
    SPEECH / "allison/en/all-circuits-busy-now.wav",
    CACHE / "whisper" / "transcripts" / "audio" / "librivox-sense_and_sensibility_01_austen_64kb-0870.wav",
]
OPSET = 17


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 16000:
            die(f"{path}: need 16 kHz mono PCM16, got {w.getframerate()} Hz, "
                f"{w.getnchannels()} ch, {8 * w.getsampwidth()} bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm.astype(np.float32) / 32768.0


def feature_extractor(n_mels: int = 80):
    from transformers import WhisperFeatureExtractor
    if (HF_DIR / "preprocessor_config.json").exists():
        return WhisperFeatureExtractor.from_pretrained(HF_DIR)
    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000, hop_length=160,
                                   chunk_length=30, n_fft=400)


def log_mel(fe, samples: np.ndarray) -> np.ndarray:
    out = fe(samples, sampling_rate=16000, return_tensors="np")
    return out["input_features"].astype(np.float32)  # [1, n_mels, 3000]


def special_ids(tok_json: Path) -> dict:
    added = {t["content"]: t["id"] for t in json.loads(tok_json.read_text())["added_tokens"]}
    return added


def strip_prompt(ids: list, sot: int, nots: int, eot: int) -> list:
    """Generated text tokens only: drop the forced prefix and the closing eot."""
    out = list(ids)
    while out and out[0] in (sot, nots):
        out.pop(0)
    while out and out[-1] == eot:
        out.pop()
    return out


def load_hf():
    import torch
    from transformers import WhisperForConditionalGeneration
    if not (HF_DIR / "config.json").exists():
        die(f"{HF_DIR} has no model; run `whisper_ct2.py convert` first")
    model = WhisperForConditionalGeneration.from_pretrained(HF_DIR, dtype=torch.float32)
    return model.eval()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def report_sizes(folder: Path) -> None:
    """Prints each file's size in `folder` and the total (fixtures must stay a few MB)."""
    total = 0
    for f in sorted(folder.iterdir()):
        total += f.stat().st_size
        print(f"  {f.name}: {f.stat().st_size} bytes")
    print(f"  total {total / 1e6:.2f} MB in {folder}")
