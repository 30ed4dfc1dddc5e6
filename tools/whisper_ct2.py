#!/usr/bin/env python3
"""Whisper tiny.en tooling: CTranslate2 model.bin -> transformers -> ONNX, plus references.

Runs in the venv made by tools/setup_whisper.sh (.cache/whisper-venv). Subcommands:

  convert    read CTranslate2's model.bin (own reader), build transformers'
             WhisperForConditionalGeneration from it, save it to .cache/whisper/tiny.en/hf/ and
             check the encoder against ctranslate2's own encoder on real speech.
  export     ONNX (opset 17, float32) encoder.onnx + decoder.onnx (self- and cross-attention KV
             cache, one graph for the first and the later steps), tokenizer.json and whisper.json
             into .cache/whisper/tiny.en/onnx/; checks greedy token ids against transformers and
             cached vs uncached logits with onnxruntime.
  tiny-fixture
             a random-weight Whisper with tiny dims (2+2 layers, d_model 16, 2 heads, ffn 32;
             tiny.en's vocabulary, special ids and suppress lists) exported by the same code as
             `export` into fixtures/whisper-tiny-test/, plus expected.json: onnxruntime greedy
             token ids and first-step logits for two real clips (rules written into the file).
  reference  transcribe WAVs (16 kHz mono PCM16) with transformers (greedy, no timestamps) into
             `path<TAB>text` lines; dump log-mel features and samples of two clips for the Rust
             front-end tests (.cache/whisper/tiny.en/ref/).

CTranslate2 model.bin layout: see tools/whisper_ct2_reader.py.

Code: tools/whisper_common.py (paths, check clips, WAV and log-mel, special ids, atomic writes,
onnxruntime sessions, loading the transformers model), whisper_ct2_reader.py (model.bin reader,
transformers configs, `convert`), whisper_onnx_export.py (torch wrappers, ONNX export,
whisper.json, OrtWhisper, `export` and its checks), whisper_reference.py (`reference`),
whisper_fixture.py (`tiny-fixture`). Every name other tools import from whisper_ct2 (e.g.
atomic_write_bytes, export_onnx, feature_extractor, log_mel, ort_session, read_wav,
report_sizes) stays importable from here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_common import (  # noqa: E402,F401
    CACHE, CHECK_CLIPS, CT2_DIR, HF_DIR, ONNX_DIR, OPSET, REF_DIR, ROOT, SPEECH, WDIR,
    atomic_write_bytes, die, feature_extractor, load_hf, log_mel, ort_session, read_wav,
    report_sizes, special_ids, strip_prompt)
from whisper_ct2_reader import (  # noqa: E402,F401
    CT2_DTYPES, Ct2Model, build_hf, cmd_convert, generation_config, read_ct2, whisper_config)
from whisper_fixture import (  # noqa: E402,F401
    FIXTURE_CLIPS, FIXTURE_DIR, FIXTURE_INIT_STD, FIXTURE_MAX_NEW, FIXTURE_N_LOGITS,
    FIXTURE_SEED, cmd_tiny_fixture, fixture_greedy, real_vocab_size)
from whisper_onnx_export import (  # noqa: E402,F401
    OrtWhisper, check_onnx, cmd_export, describe_onnx, export_dir, export_onnx, make_wrappers,
    past_names, rename_matmul_weights)
from whisper_reference import cmd_reference  # noqa: E402,F401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=120)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("convert", help="model.bin -> transformers; check against CTranslate2")
    e = sub.add_parser("export", help="transformers -> ONNX encoder/decoder; check with ORT")
    e.add_argument("--out", help=f"output folder (default {ONNX_DIR})")
    r = sub.add_parser("reference", help="Python reference transcripts and log-mel fixtures")
    r.add_argument("wavs", nargs="*", help="16 kHz mono PCM16 WAV files")
    r.add_argument("--list", help="file with one WAV path per line (first tab field)")
    r.add_argument("--out", help="write path<TAB>text lines here")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--no-fixtures", action="store_true")
    t = sub.add_parser("tiny-fixture", help="random tiny Whisper -> fixtures/whisper-tiny-test/ "
                                             "(ONNX like `export`, plus expected.json)")
    t.add_argument("--init-std", type=float, default=FIXTURE_INIT_STD,
                   help="std of the random normal weights (transformers' init_std; default "
                        f"{FIXTURE_INIT_STD})")
    args = ap.parse_args()
    {"convert": cmd_convert, "export": cmd_export, "reference": cmd_reference,
     "tiny-fixture": cmd_tiny_fixture}[args.cmd](args)


if __name__ == "__main__":
    main()
