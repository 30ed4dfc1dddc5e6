"""`whisper_ct2.py tiny-fixture`: a random-weight Whisper with tiny dims (tiny.en's vocabulary,
special ids and suppress lists) exported by the same code as `export` into
fixtures/whisper-tiny-test/, plus expected.json (onnxruntime greedy ids and first-step logits of
two real clips, with the exact decoding rules), checked against transformers generate.
"""
from __future__ import annotations

import json

import numpy as np

from whisper_common import (CT2_DIR, HF_DIR, ONNX_DIR, ROOT, atomic_write_bytes, die,
                            feature_extractor, log_mel, read_wav, report_sizes, special_ids,
                            strip_prompt)
from whisper_ct2_reader import generation_config, whisper_config
from whisper_onnx_export import OrtWhisper, describe_onnx, export_dir

FIXTURE_DIR = ROOT / "fixtures" / "whisper-tiny-test"
FIXTURE_SEED = 20261121
# two short (1-4 s) English Asterisk prompts; stored in expected.json relative to the repo root
FIXTURE_CLIPS = [
    ".cache/speech/allison/en/all-circuits-busy-now.wav",
    ".cache/speech/allison/en/vm-repeat.wav",  # its greedy tokens differ from the first clip's
]
FIXTURE_MAX_NEW = 20
FIXTURE_N_LOGITS = 8
# transformers' default init_std (0.02) leaves the audio almost without effect at d_model 16: the
# sinusoidal encoder positions (+-1) swamp the conv outputs, and the first-step logits of the two
# clips differ by only ~4e-5 (same argmax, same tokens). At 0.1 they differ by ~1.6e-2, the
# greedy tokens vary more over the steps and the top-2 margins are >= ~7e-3.
FIXTURE_INIT_STD = 0.1


def real_vocab_size(added: dict) -> int:
    for f in (HF_DIR / "config.json", ONNX_DIR / "whisper.json"):
        if f.exists():
            c = json.loads(f.read_text())
            return int(c.get("vocab_size"))
    return added["<|notimestamps|>"] + 1 + 1501  # tiny.en: text + specials + 1501 timestamps


def fixture_greedy(ow: OrtWhisper, feats: np.ndarray, max_new: int) -> dict:
    """Greedy decoding with the KV cache exactly as a runtime does it; see RULES in expected.json."""
    c = ow.cfg
    enc = ow.enc.run(None, {"input_features": feats})[0]
    past = ow.empty_past(1)
    cur = np.array([c["prompt_notimestamps"]], np.int64)
    suppress = np.array(c["suppress_tokens"], np.int64)
    begin = np.array(c["begin_suppress_tokens"], np.int64)
    tokens, margins, first = [], [], None
    stop = "max_new_tokens"
    for step in range(max_new):
        logits, past = ow.step(cur, enc, past)
        row = logits[0, -1].astype(np.float32)
        if step == 0:
            first = row.copy()
        row = row.copy()
        row[suppress] = -np.inf
        if step == 0:
            row[begin] = -np.inf
        tok = int(np.argmax(row))  # ties: lowest id
        top2 = np.partition(row, -2)[-2:]
        margins.append(float(top2[1] - top2[0]))
        if tok == c["eot"]:
            stop = "eot"
            break
        tokens.append(tok)
        cur = np.array([[tok]], np.int64)
    return dict(tokens=tokens, stop=stop, first=first, enc=enc, margins=margins,
                steps=len(margins))


def cmd_tiny_fixture(args) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration
    torch.set_num_threads(args.threads)
    ct2_cfg = json.loads((CT2_DIR / "config.json").read_text())
    added = special_ids(CT2_DIR / "tokenizer.json")
    dims = dict(vocab=real_vocab_size(added), n_mels=80, d_model=16, n_enc=2, enc_heads=2,
                n_dec=2, dec_heads=2, ffn=32, n_audio_ctx=1500, n_text_ctx=448)
    torch.manual_seed(FIXTURE_SEED)
    model = WhisperForConditionalGeneration(
        whisper_config(dims, ct2_cfg, added, init_std=args.init_std)).eval()
    model.generation_config = generation_config(ct2_cfg, added, dims["n_text_ctx"],
                                                alignment_heads=None)
    print("tiny model: " + ", ".join(f"{k}={v}" for k, v in dims.items())
          + f", init_std={args.init_std}, seed={FIXTURE_SEED}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    source = (f"random weights: transformers WhisperForConditionalGeneration, "
              f"torch.manual_seed({FIXTURE_SEED}), init_std {args.init_std}; "
              f"built by tools/whisper_ct2.py tiny-fixture (CI test fixture, not a real model)")
    cfg = export_dir(model, added, FIXTURE_DIR, "whisper-tiny-test", source)
    describe_onnx(FIXTURE_DIR)

    fe = feature_extractor(cfg["n_mels"])
    ow = OrtWhisper(FIXTURE_DIR, cfg, args.threads)
    tok = Tokenizer.from_file(str(FIXTURE_DIR / "tokenizer.json"))
    clips, ok = [], True
    for rel in FIXTURE_CLIPS:
        samples = read_wav(ROOT / rel)
        feats = log_mel(fe, samples)
        r = fixture_greedy(ow, feats, FIXTURE_MAX_NEW)
        # checks: transformers generate (same rules) and cached vs uncached logits
        with torch.no_grad():
            hf = model.generate(torch.from_numpy(feats), max_new_tokens=FIXTURE_MAX_NEW,
                                do_sample=False, num_beams=1, return_timestamps=False)
            hf_first = model(input_features=torch.from_numpy(feats),
                             decoder_input_ids=torch.tensor([cfg["prompt_notimestamps"]])
                             ).logits[0, -1].numpy()
        hf_ids = strip_prompt(hf[0].tolist(), cfg["sot"], cfg["notimestamps"], cfg["eot"])
        full = np.array([cfg["prompt_notimestamps"] + r["tokens"]], np.int64)
        nocache, _ = ow.step(full, r["enc"], ow.empty_past(1))
        last_cached = None
        if r["tokens"]:  # logits of the last step, recomputed without a cache
            past = ow.empty_past(1)
            cur = np.array([cfg["prompt_notimestamps"]], np.int64)
            for t in [None] + r["tokens"][:-1]:
                if t is not None:
                    cur = np.array([[t]], np.int64)
                lg, past = ow.step(cur, r["enc"], past)
            last_cached = lg[0, -1]
        cache_diff = (float(np.abs(nocache[0, len(full[0]) - 2] - last_cached).max())
                      if last_cached is not None else 0.0)
        first_diff = float(np.abs(r["first"] - hf_first).max())
        same = hf_ids == r["tokens"]
        ok &= same and cache_diff < 1e-4 and first_diff < 1e-4
        text = tok.decode(r["tokens"], skip_special_tokens=True)
        n_ts = sum(t >= cfg["timestamp_begin"] for t in r["tokens"])
        print(f"{rel}: {len(samples) / 16000:.2f} s, {len(r['tokens'])} tokens, stop {r['stop']}, "
              f"equal to transformers generate: {same}; first-step logits |ort-torch| "
              f"{first_diff:.2e}; cached vs uncached last-step logits {cache_diff:.2e}; "
              f"min top-2 margin {min(r['margins']):.3e}; timestamp ids {n_ts}")
        print(f"  ids {r['tokens']}\n  text {text!r}")
        if not same:
            print(f"  hf  {hf_ids}")
        clips.append({
            "wav": rel,
            "seconds": round(len(samples) / 16000, 4),
            "n_samples": int(len(samples)),
            "tokens": r["tokens"],
            "n_steps": r["steps"],
            "stop": r["stop"],
            "text": text,
            "first_step_logits_first8": [float(x) for x in r["first"][:FIXTURE_N_LOGITS]],
            "first_step_logits_max": float(r["first"].max()),
            "first_step_logits_argmax": int(r["first"].argmax()),
            "min_top2_margin": min(r["margins"]),
            "encoder_output_first8": [float(x) for x in r["enc"][0, 0, :FIXTURE_N_LOGITS]],
            "encoder_output_abs_mean": float(np.abs(r["enc"].astype(np.float64)).mean()),
        })
    if not ok:
        die("tiny fixture: ORT greedy differs from transformers or the cache check failed")
    if clips[0]["tokens"] == clips[1]["tokens"]:
        print("warning: both clips give the same tokens")
    expected = {
        "about": "Greedy outputs of the random-weight fixture model in this folder "
                 "(tools/whisper_ct2.py tiny-fixture); onnxruntime "
                 f"{__import__('onnxruntime').__version__} CPU, float32. The text is garbage "
                 "by design; the token ids and logits test a runtime's plumbing.",
        "rules": {
            "features": "transformers WhisperFeatureExtractor (n_fft 400, hop 160, 80 mels, "
                        "30 s = 480000 samples zero-padded, 3000 frames), WAV PCM16 / 32768",
            "encoder": "encoder.onnx on input_features [1, 80, 3000] -> last_hidden_state "
                       "[1, 1500, d_model]; encoder_output_first8 = last_hidden_state[0, 0, :8]; "
                       "encoder_output_abs_mean = mean |last_hidden_state| over all 1500 x "
                       "d_model values",
            "step0": "input_ids = whisper.json prompt_notimestamps ([sot, notimestamps]) as "
                     "[1, 2]; encoder_hidden_states = encoder output; every past_key_values.* "
                     "(decoder and encoder) zero-length: [1, n_heads, 0, head_dim]",
            "later_steps": "input_ids = [[previous token]] ([1, 1]); every present.* of the "
                           "previous step fed back as the matching past_key_values.* (the "
                           "encoder presents pass through unchanged); encoder_hidden_states "
                           "still fed",
            "logits_row": "logits[0, -1] (the last position) of each step; "
                          "first_step_logits_* are taken from the raw step-0 row, before any "
                          "suppression",
            "suppress": "whisper.json suppress_tokens set to -inf at every step",
            "begin_suppress": "whisper.json begin_suppress_tokens ([220, eot]) set to -inf "
                              "at the first generated step (step 0) only",
            "no_other_rules": "no timestamp rules: timestamp ids (>= timestamp_begin) are "
                              "neither suppressed nor forced; no length penalty, no "
                              "temperature, no repetition rules",
            "pick": "argmax over the suppressed row (ties: lowest id)",
            "stop": f"stop when the picked token is eot (not included in tokens; stop = "
                    f"'eot') or after {FIXTURE_MAX_NEW} new tokens (stop = "
                    f"'max_new_tokens'); tokens exclude the prompt",
            "text": "tokenizer.json decode of tokens with skip_special_tokens",
            "margin": "min_top2_margin: smallest gap between the best and second-best "
                      "suppressed logit over the steps (how robust the argmax is)",
        },
        "max_new_tokens": FIXTURE_MAX_NEW,
        "prompt": cfg["prompt_notimestamps"],
        "eot": cfg["eot"],
        "clips": clips,
    }
    atomic_write_bytes(FIXTURE_DIR / "expected.json",
                       (json.dumps(expected, indent=2) + "\n").encode())
    report_sizes(FIXTURE_DIR)
