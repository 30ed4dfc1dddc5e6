"""The LLM's ONNX files for tools/llm_export.py (shared by `export` and `tiny-fixture`): the
decoder step module with an explicit KV cache, decoder.onnx + embed_tokens.f32 +
tokenizer.json + llm.json, and the onnxruntime driver that mirrors the Rust runtime
(OrtLlm: greedy decoding, cached vs uncached checks) next to transformers' generate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from whisper_ct2 import atomic_write_bytes, export_onnx, ort_session
from llm_export_common import OPSET, die


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
