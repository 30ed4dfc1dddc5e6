"""The tiny-fixture subcommand of tools/llm_export.py: fixtures/audio-llm-tiny-test/ (a random
tiny Llama with SmolLM2's tokenizer, a tiny projector, expected greedy ids) and
fixtures/audio-llm-tiny-trim/ (the same projector trimmed to the audio's length).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from whisper_ct2 import atomic_write_bytes, ort_session, report_sizes
from llm_export_common import (FIXTURE_DIR, HF_DIR, ROOT, SEED, TRIM_FIXTURE_DIR, WHISPER_FIXTURE,
                               chat_info, die, render_chat, set_threads)
from llm_export_onnx import (OrtLlm, cache_check, describe_onnx, export_llm_files, hf_generate,
                             trim_after_stop)
from llm_export_model import replace_dir
from llm_export_projector import (ENCODER_STATES, audio_llm_config, export_projector,
                                  export_trim_projector, make_projector, make_trim_projector,
                                  run_audio_prompt, trim_states)


FIXTURE_MAX_NEW = 12
FIXTURE_TEXT_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea."]
FIXTURE_CLIP = ".cache/speech/allison/en/all-circuits-busy-now.wav"
# transformers' default initializer_range (0.02) makes a hidden-16 model input-blind: both text
# prompts and the audio prompt give token 40230 twelve times, and zeroing the audio embeddings
# moves the first-step logits by only 8e-2 (same ids). At 0.5 the prompts give different ids,
# zeroing the audio changes the first-step logits by ~3.5 and the ids, and the top-2 margins are
# >= 0.027 (far above the ~1e-5 float noise between runtimes).
FIXTURE_INIT_STD = 0.5
FIXTURE_N = 8


def cmd_tiny_fixture(args) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM
    set_threads(args.threads)
    if not (HF_DIR / "tokenizer.json").exists():
        die(f"{HF_DIR} is missing; run `llm_export.py convert` first (the fixture uses SmolLM2's "
            "real tokenizer)")
    wcfg = json.loads((WHISPER_FIXTURE / "whisper.json").read_text())
    real = json.loads((HF_DIR / "config.json").read_text())
    from transformers import AutoTokenizer
    chat = chat_info(AutoTokenizer.from_pretrained(HF_DIR))
    cfg_hf = LlamaConfig(
        vocab_size=real["vocab_size"], hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
        max_position_embeddings=real["max_position_embeddings"], rms_norm_eps=real["rms_norm_eps"],
        rope_parameters=dict(real["rope_parameters"]), tie_word_embeddings=True,
        bos_token_id=real["bos_token_id"], eos_token_id=real["eos_token_id"],
        pad_token_id=None, initializer_range=args.init_std, hidden_act="silu")
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(cfg_hf).eval()
    # pad id set only after construction: as nn.Embedding's padding_idx it would zero the
    # embedding row of <|im_end|> (id 2), which the prompts use
    model.config.pad_token_id = real["pad_token_id"]
    model.generation_config.eos_token_id = real["eos_token_id"]
    model.generation_config.pad_token_id = real["pad_token_id"]
    print(f"tiny LLM: 2 layers, hidden 16, heads 2/1, head_dim 8, ffn 32, vocab "
          f"{cfg_hf.vocab_size}, init_std {args.init_std}, seed {SEED}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    if args.trim_only:
        tiny_trim_fixture(model, wcfg, args)
        return
    FIXTURE_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".audio-llm-tiny-", dir=FIXTURE_DIR.parent))
    os.chmod(tmp, 0o755)
    source = (f"random weights: transformers LlamaForCausalLM, torch.manual_seed({SEED}), "
              f"initializer_range {args.init_std}; SmolLM2-135M-Instruct's tokenizer; built by "
              "tools/llm_export.py tiny-fixture (CI test fixture, not a real model)")
    llm_cfg = export_llm_files(model, HF_DIR / "tokenizer.json", chat, tmp, "llm-tiny-test", source)
    enc_dim, n_frames = wcfg["d_model"], wcfg["n_audio_ctx"]
    proj = make_projector(enc_dim, llm_cfg["hidden_size"], n_frames=n_frames)
    export_projector(proj, tmp, n_frames)
    cfg = audio_llm_config(
        "audio-llm-tiny-test: random tiny Whisper encoder + untrained tiny projector + random "
        "tiny Llama", "../whisper-tiny-test/encoder.onnx", "../whisper-tiny-test/whisper.json",
        enc_dim, n_frames, ".", llm_cfg, proj,
        "points at ../whisper-tiny-test for the encoder; the LLM files (llm.json, decoder.onnx, "
        "embed_tokens.f32, tokenizer.json) and projector.onnx are in this folder")
    (tmp / "audio_llm.json").write_text(json.dumps(cfg, indent=2) + "\n")
    replace_dir(tmp, FIXTURE_DIR)
    describe_onnx(FIXTURE_DIR / "decoder.onnx")
    describe_onnx(FIXTURE_DIR / "projector.onnx")

    ol = OrtLlm(FIXTURE_DIR, args.threads)
    tok = Tokenizer.from_file(str(FIXTURE_DIR / "tokenizer.json"))
    stop = llm_cfg["stop_token_ids"]
    ok, cases = True, []

    def record(kind: str, r: dict, pe: np.ndarray, hf_ids: list, extra: dict) -> dict:
        nonlocal ok
        cdiff = cache_check(ol, pe, r)
        same = r["tokens"] == hf_ids
        ok &= same and cdiff < 1e-4
        print(f"{kind}: {pe.shape[0]} prompt embeddings, ids {r['tokens']} (stop {r['stop']}); "
              f"equal to transformers generate: {same}; cached vs uncached {cdiff:.2e}; min "
              f"top-2 margin {min(r['margins']):.4f}")
        if not same:
            print(f"  hf {hf_ids}")
        first = r["rows"][0]
        return dict(extra, tokens=r["tokens"], stop=r["stop"], n_steps=len(r["rows"]),
                    n_prompt_embeddings=int(pe.shape[0]),
                    text=tok.decode(r["tokens"], skip_special_tokens=True),
                    first_step_logits_first8=[float(x) for x in first[:FIXTURE_N]],
                    first_step_logits_max=float(first.max()),
                    first_step_logits_argmax=int(first.argmax()),
                    min_top2_margin=min(r["margins"]),
                    cache_vs_nocache_max_abs=cdiff)

    for p in FIXTURE_TEXT_PROMPTS:
        text = render_chat(chat, p)
        ids = tok.encode(text, add_special_tokens=False).ids
        pe = ol.embed(ids)
        r = ol.greedy(pe, FIXTURE_MAX_NEW)
        hf_ids = trim_after_stop(hf_generate(model, FIXTURE_MAX_NEW, input_ids=ids), stop)
        cases.append(record("text " + repr(p), r, pe, hf_ids,
                            dict(kind="text", user=p, prompt_text=text, prompt_ids=ids)))

    ra = run_audio_prompt(FIXTURE_DIR, cfg, ROOT / FIXTURE_CLIP, "asr", None, args.threads,
                          FIXTURE_MAX_NEW, proj=proj)
    hf_ids = trim_after_stop(hf_generate(model, FIXTURE_MAX_NEW, inputs_embeds=ra["embeds"]), stop)
    print(f"audio: projector ORT vs torch {ra['proj_diff']:.2e}; audio embeds rms "
          f"{ra['audio_rms']:.4f}, embedding table rms {ra['text_rms']:.4f}")
    # the audio must matter: same prompt with zero audio embeddings
    pe0 = ra["embeds"].copy()
    nb = len(ra["ids_before"])
    pe0[nb:nb + ra["n_audio"]] = 0.0
    r0 = ol.greedy(pe0, FIXTURE_MAX_NEW)
    audio_matters = r0["tokens"] != ra["gen"]["tokens"]
    print(f"  with zero audio embeddings instead: {r0['tokens']} (differs: {audio_matters}); "
          f"first-step logits max change {float(np.abs(r0['rows'][0] - ra['gen']['rows'][0]).max()):.3e}")
    st, au = ra["states"], ra["audio"]
    cases.append(record("audio asr", ra["gen"], ra["embeds"], hf_ids, dict(
        kind="audio", task="asr", wav=FIXTURE_CLIP, seconds=round(len(ra["samples"]) / 16000, 4),
        n_samples=int(len(ra["samples"])), user=ra["user"], prompt_text=ra["text"],
        text_before=ra["before"], text_after=ra["after"], ids_before=ra["ids_before"],
        ids_after=ra["ids_after"], n_audio_tokens=int(ra["n_audio"]),
        encoder_output_first8=[float(x) for x in st[0, 0, :FIXTURE_N]],
        encoder_output_abs_mean=float(np.abs(st.astype(np.float64)).mean()),
        audio_embeds_shape=list(au.shape),
        audio_embeds_first8=[float(x) for x in au[0, 0, :FIXTURE_N]],
        audio_embeds_abs_mean=float(np.abs(au.astype(np.float64)).mean()))))
    if not ok:
        die("tiny fixture: ORT greedy differs from transformers or the cache check failed")
    if cases[0]["tokens"] == cases[1]["tokens"]:
        print("warning: both text prompts give the same tokens")

    expected = {
        "about": "Greedy outputs of the random-weight fixture in this folder (tools/llm_export.py "
                 "tiny-fixture); onnxruntime "
                 f"{__import__('onnxruntime').__version__} CPU, float32, batch 1. The text is "
                 "garbage by design; ids and logits test a runtime's plumbing. Checked equal to "
                 "transformers generate(do_sample=False) on the same embeddings.",
        "rules": {
            "text_prompt": "prompt_text = llm.json chat: system_prefix + default_system + "
                           "system_suffix + user_prefix + user + user_suffix; prompt_ids = "
                           "tokenizer.json encode(prompt_text, add_special_tokens = false); "
                           "inputs_embeds = embed_tokens.f32 rows of prompt_ids",
            "audio_features": "WAV PCM16 / 32768 -> transformers WhisperFeatureExtractor (80 mels, "
                              "n_fft 400, hop 160, 30 s zero padding, 3000 frames) -> "
                              "../whisper-tiny-test/encoder.onnx input_features [1, 80, 3000] -> "
                              "last_hidden_state [1, 1500, 16] -> projector.onnx encoder_states "
                              "-> audio_embeds [1, 88, 16]",
            "audio_prompt": "user = audio_llm.json tasks.asr ('Transcribe the audio. "
                            "<SpeechHere>'); prompt_text = prompt_template with {system} -> "
                            "system, {prompt} -> user; split prompt_text at '<SpeechHere>' into "
                            "text_before / text_after (verbatim: the space before the "
                            "placeholder stays at the end of text_before); the placeholder's "
                            "own characters are removed, never tokenized; ids_before / "
                            "ids_after = encode(..., add_special_tokens = false); inputs_embeds = "
                            "[embed rows of ids_before; the 88 audio_embeds rows; embed rows of "
                            "ids_after]",
            "step0": "inputs_embeds [1, n, 16] (n = n_prompt_embeddings); attention_mask ones "
                     "[1, n] int64; position_ids [[0, 1, ..., n-1]] int64 (audio rows take "
                     "positions like tokens); every past_key_values.{i}.key/value zero-length "
                     "[1, 1, 0, 8] float32",
            "later_steps": "step t = 1, 2, ...: inputs_embeds = embed_tokens.f32 row of the "
                           "token picked at step t-1, [1, 1, 16]; attention_mask ones [1, n+t]; "
                           "position_ids [[n+t-1]]; every present.* of step t-1 fed back as "
                           "the matching past_key_values.*",
            "pick": "argmax of logits[0, -1] (the last row), ties: lowest id; no temperature, "
                    "no penalties, no suppression",
            "stop": f"after the picked token is in llm.json stop_token_ids ({stop}; the stop "
                    f"token is included in tokens, stop = 'stop_token') or after "
                    f"{FIXTURE_MAX_NEW} tokens (stop = 'max_new_tokens')",
            "first_step_logits": "first_step_logits_* from the raw step-0 last row",
            "text": "tokenizer.json decode of tokens, skip_special_tokens",
            "margin": "min_top2_margin: smallest best-minus-second logit gap over the steps",
        },
        "max_new_tokens": FIXTURE_MAX_NEW,
        "stop_token_ids": stop,
        "cases": cases,
    }
    atomic_write_bytes(FIXTURE_DIR / "expected.json", (json.dumps(expected, indent=2) + "\n").encode())
    report_sizes(FIXTURE_DIR)
    tiny_trim_fixture(model, wcfg, args)


TRIM_LONG_CLIP = ".cache/speech/allison/en/confbridge-lock-extended.wav"
TRIM_QUESTION = "What is the first word?"


def tiny_trim_fixture(model, wcfg: dict, args) -> None:
    """fixtures/audio-llm-tiny-trim/: the tiny projector with a dynamic frames axis and
    trim_to_audio, over the LLM files of fixtures/audio-llm-tiny-test (which must be this
    seed's: checked) and the encoder of fixtures/whisper-tiny-test."""
    import torch
    from tokenizers import Tokenizer
    llm_cfg = json.loads((FIXTURE_DIR / "llm.json").read_text())
    ol = OrtLlm(FIXTURE_DIR, args.threads)
    if not np.array_equal(ol.table, model.model.embed_tokens.weight.detach().numpy()):
        die(f"{FIXTURE_DIR}/embed_tokens.f32 is not the seeded tiny LLM's table; run "
            "tiny-fixture without --trim-only")
    enc_dim, hidden, n_frames = wcfg["d_model"], llm_cfg["hidden_size"], wcfg["n_audio_ctx"]
    if n_frames != ENCODER_STATES:
        die(f"whisper.json n_audio_ctx {n_frames}, the trim rule assumes {ENCODER_STATES}")
    proj = make_trim_projector(enc_dim, hidden)
    fixed = make_projector(enc_dim, hidden, n_frames=n_frames)
    if any(not torch.equal(a, b) for a, b in zip(proj.state_dict().values(),
                                                   fixed.state_dict().values())):
        die("the trim projector's weights differ from the fixed-length projector's")
    TRIM_FIXTURE_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".audio-llm-tiny-trim-", dir=TRIM_FIXTURE_DIR.parent))
    os.chmod(tmp, 0o755)
    export_trim_projector(proj, tmp)
    cfg = audio_llm_config(
        "audio-llm-tiny-trim: the tiny audio LLM with audio tokens cut to the clip's length",
        "../whisper-tiny-test/encoder.onnx", "../whisper-tiny-test/whisper.json", enc_dim,
        n_frames, "../audio-llm-tiny-test", llm_cfg, proj,
        "points at ../whisper-tiny-test for the encoder and ../audio-llm-tiny-test for the LLM "
        "files; projector.onnx (the same weights as ../audio-llm-tiny-test/projector.onnx, "
        "dynamic frames axis) is in this folder")
    pc = cfg["projector"]
    pc.update(trim_to_audio=True, input_shape=["batch", "frames", enc_dim],
              output_shape=["batch", "n_tokens", hidden],
              stacking="window w = frames [w*stride, w*stride+window), concatenated frame-major; "
                       "n_tokens = (frames - window) // stride + 1 full windows of the frames given")
    cfg["rules"]["audio_tokens"] = (
        "trim_to_audio: the encoder runs on the 30 s window as usual (1500 states, 320 samples "
        "each); n_frames = max(1, ceil(n_samples / 320)) (n_samples: the 16 kHz audio before "
        "padding); n_tokens = max(1, ceil(n_frames / stride)) capped at (1500 - window) // "
        "stride + 1 (= n_audio_tokens); the projector takes the first (n_tokens - 1) * stride + "
        "window states (capped at 1500) and gives n_tokens rows")
    cfg["rules"]["inputs_embeds"] = ("[embed_tokens[ids_before]; audio_embeds[0] (n_tokens rows); "
                                     "embed_tokens[ids_after]]")
    (tmp / "audio_llm.json").write_text(json.dumps(cfg, indent=2) + "\n")
    replace_dir(tmp, TRIM_FIXTURE_DIR)
    describe_onnx(TRIM_FIXTURE_DIR / "projector.onnx")

    # the dynamic axis: ORT = torch at several lengths, and = the fixed projector's first rows
    ps = ort_session(TRIM_FIXTURE_DIR / "projector.onnx", args.threads)
    g = torch.Generator().manual_seed(SEED)
    full = torch.randn(1, n_frames, enc_dim, generator=g)
    with torch.no_grad():
        ref = fixed(full).numpy()
    worst = 0.0
    for n_tok in (1, 2, 6, 40, proj.n_tokens):
        x = full[:, :trim_states(n_tok, proj.window, proj.stride)]
        got = ps.run(None, {"encoder_states": x.numpy()})[0]
        if got.shape != (1, n_tok, hidden):
            die(f"trim projector: {x.shape[1]} frames gave {got.shape}, expected {n_tok} tokens")
        with torch.no_grad():
            worst = max(worst, float(np.abs(proj(x).numpy() - got).max()),
                        float(np.abs(ref[:, :n_tok] - got).max()))
    print(f"trim projector: ORT vs torch and vs the fixed projector's first rows, 1..{proj.n_tokens} "
          f"tokens: max abs {worst:.2e}")
    if worst > 1e-5:
        die("trim projector check failed")

    tok = Tokenizer.from_file(str(FIXTURE_DIR / "tokenizer.json"))
    stop = llm_cfg["stop_token_ids"]
    cases, ok = [], True
    for wav, task, question in ((FIXTURE_CLIP, "asr", None), (TRIM_LONG_CLIP, "asr", None),
                                (FIXTURE_CLIP, "qa", TRIM_QUESTION)):
        ra = run_audio_prompt(TRIM_FIXTURE_DIR, cfg, ROOT / wav, task, question, args.threads,
                              FIXTURE_MAX_NEW, proj=proj)
        r, pe = ra["gen"], ra["embeds"]
        hf_ids = trim_after_stop(hf_generate(model, FIXTURE_MAX_NEW, inputs_embeds=pe), stop)
        cdiff = cache_check(ra["ol"], pe, r)
        same = r["tokens"] == hf_ids
        pe0 = pe.copy()
        nb = len(ra["ids_before"])
        pe0[nb:nb + ra["n_audio"]] = 0.0
        matters = ol.greedy(pe0, FIXTURE_MAX_NEW)["tokens"] != r["tokens"]
        ok &= same and cdiff < 1e-4 and ra["proj_diff"] < 1e-5
        n = len(ra["samples"])
        print(f"{Path(wav).name} ({task}): {n} samples -> {ra['states'].shape[1]} encoder states "
              f"-> {ra['n_audio']} audio tokens; {pe.shape[0]} prompt embeddings; ids "
              f"{r['tokens']} (stop {r['stop']}); = transformers: {same}; cached vs uncached "
              f"{cdiff:.2e}; projector ORT vs torch {ra['proj_diff']:.2e}; zero audio changes "
              f"the ids: {matters}; min top-2 margin {min(r['margins']):.4f}")
        au = ra["audio"]
        cases.append(dict(
            kind="audio", task=task, question=question, wav=wav, seconds=round(n / 16000, 4),
            n_samples=n, n_encoder_states=int(ra["states"].shape[1]),
            n_audio_tokens=int(ra["n_audio"]), user=ra["user"], prompt_text=ra["text"],
            ids_before=ra["ids_before"], ids_after=ra["ids_after"],
            n_prompt_embeddings=int(pe.shape[0]), tokens=r["tokens"], stop=r["stop"],
            text=tok.decode(r["tokens"], skip_special_tokens=True),
            audio_embeds_shape=list(au.shape),
            audio_embeds_first8=[float(x) for x in au[0, 0, :FIXTURE_N]],
            audio_embeds_last8=[float(x) for x in au[0, -1, :FIXTURE_N]],
            min_top2_margin=min(r["margins"]), cache_vs_nocache_max_abs=cdiff,
            zero_audio_changes_ids=bool(matters)))
    if not ok:
        die("trim fixture: ORT greedy differs from transformers, or a check failed")
    if not cases[0]["n_audio_tokens"] < cases[1]["n_audio_tokens"]:
        die("trim fixture: the short clip does not get fewer audio tokens than the long one")
    expected = {
        "about": "Greedy outputs of the trimmed tiny audio LLM in this folder (tools/llm_export.py "
                 f"tiny-fixture); onnxruntime {__import__('onnxruntime').__version__} CPU, float32, "
                 "batch 1; checked equal to transformers generate(do_sample=False) on the same "
                 "embeddings. Garbage text by design: ids test a runtime's plumbing.",
        "rules": {
            "audio_features": "as ../audio-llm-tiny-test/expected.json (30 s padded log-mel -> "
                              "../whisper-tiny-test/encoder.onnx -> [1, 1500, 16])",
            "audio_tokens": cfg["rules"]["audio_tokens"],
            "audio_prompt": "as ../audio-llm-tiny-test/expected.json, with n_audio_tokens audio "
                            "rows (this case's) in place of 88; qa: tasks.qa with {question} "
                            "replaced by the case's question",
            "decode": "as ../audio-llm-tiny-test/expected.json (step0, later_steps, pick, stop)",
        },
        "max_new_tokens": FIXTURE_MAX_NEW,
        "stop_token_ids": stop,
        "cases": cases,
    }
    atomic_write_bytes(TRIM_FIXTURE_DIR / "expected.json",
                       (json.dumps(expected, indent=2) + "\n").encode())
    report_sizes(TRIM_FIXTURE_DIR)
