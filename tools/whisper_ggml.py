#!/usr/bin/env python3
"""Write a whisper.cpp model file (the legacy `ggml` container whisper.cpp loads) from the
transformers Whisper folder that `tools/whisper_ct2.py convert` makes (.cache/whisper/tiny.en/hf:
config.json, model.safetensors, tokenizer.json), so whisper.cpp (pywhispercpp) runs the very
weights voxq and faster-whisper run. No network: the model hubs whisper.cpp normally downloads
from are not reachable here.

Usage (the Whisper venv has numpy, safetensors and transformers):
  .cache/whisper-venv/bin/python tools/whisper_ggml.py --hf .cache/whisper/tiny.en/hf \
      --out .cache/whisper/tiny.en/ggml/ggml-tiny.en-f16.bin --type f16   # or f32, q8_0

The container, as whisper.cpp's loader (src/whisper.cpp, whisper_model_load) reads it, all
little-endian int32 unless said otherwise:
  magic 0x67676d6c; n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
  n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
  (0 f32, 1 f16, 7 q8_0; a quantized ftype is stored as 2000 + ftype: quantization version 2);
  the mel filter bank: n_mel, n_fft, then n_mel*n_fft float32 (row per mel band);
  the byte-level vocabulary: count, then per token its byte length and bytes (ids 0..count-1;
  whisper.cpp names the special tokens above that itself);
  then per tensor: n_dims, name length, ggml type (0 f32, 1 f16, 8 q8_0), the dims innermost
  first, the name, the data (row-major, innermost dim first = numpy C order reversed).
The output projection is not written (whisper.cpp ties it to the token embedding, as the
transformers model does). Tensors that whisper.cpp creates as float32 (biases, LayerNorm,
positional embeddings) stay float32 in every type; the 3-D convolution kernels are float16
unless --type f32 (whisper.cpp keeps them f16 even in a quantized model); the 2-D weights take
the chosen type. q8_0 is ggml's block format: per 32 consecutive values of a row one float16
scale d = max|x| / 127 and 32 int8 values round(x / d).
"""
import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

GGML_MAGIC = 0x67676D6C
FTYPE = {"f32": 0, "f16": 1, "q8_0": 2000 + 7}
TTYPE_F32, TTYPE_F16, TTYPE_Q8_0 = 0, 1, 8
QK8_0 = 32

# transformers sub-module name -> whisper.cpp name, inside a block
BLOCK_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
# names outside the blocks (after the leading "model." is dropped)
TOP_NAMES = {
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
}
ALWAYS_F32 = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def ggml_name(hf_name: str) -> str:
    parts = hf_name.split(".")
    if parts[0] == "model":
        parts = parts[1:]
    name = ".".join(parts)
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    if len(parts) > 3 and parts[1] == "layers":
        side, index, leaf = parts[0], parts[2], parts[-1]
        inner = ".".join(parts[3:-1])
        if inner not in BLOCK_NAMES:
            raise ValueError(f"unknown Whisper tensor {hf_name}")
        return f"{side}.blocks.{index}.{BLOCK_NAMES[inner]}.{leaf}"
    return name  # encoder.conv1.weight and the like keep their names


def byte_alphabet() -> dict:
    """The byte-level BPE alphabet: each of the 256 byte values has one printable character;
    printable Latin-1 bytes stand for themselves, the others are moved to 256 upwards."""
    keep = [b for b in range(256) if (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255)]
    char_of = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in char_of:
            char_of[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in char_of.items()}


def vocabulary(tokenizer_json: Path) -> list:
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    to_byte = byte_alphabet()
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise ValueError("tokenizer.json: vocabulary ids are not 0..n-1")
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    return [bytes(to_byte[c] for c in text) for text, _ in by_id]


def mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's mel filter bank (Slaney scale and norm, 0-8 kHz, n_fft 400), [n_mels, 201]."""
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)
    return np.ascontiguousarray(fe.mel_filters.T, dtype=np.float32)


def q8_0(data: np.ndarray) -> bytes:
    rows = data.reshape(-1, data.shape[-1]).astype(np.float32)
    if rows.shape[1] % QK8_0:
        raise ValueError(f"q8_0 needs rows that are a multiple of {QK8_0} long, got {rows.shape[1]}")
    blocks = rows.reshape(-1, QK8_0)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    x = blocks * inv[:, None]
    q = (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int8)  # round half away from zero
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", (QK8_0,))])
    out["d"] = d.astype(np.float16)
    out["qs"] = q
    return out.tobytes()


def tensor_record(name: str, data: np.ndarray, kind: str) -> bytes:
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        data = data.reshape(data.shape[0], 1)
    if data.ndim < 2 or name in ALWAYS_F32 or kind == "f32":
        ttype, payload = TTYPE_F32, data.astype("<f4").tobytes()
    elif data.ndim == 2 and kind == "q8_0":
        ttype, payload = TTYPE_Q8_0, q8_0(data)
    else:  # f16, and the conv kernels of a q8_0 model
        ttype, payload = TTYPE_F16, data.astype("<f2").tobytes()
    encoded = name.encode()
    head = struct.pack("<iii", data.ndim, len(encoded), ttype)
    head += struct.pack(f"<{data.ndim}i", *reversed(data.shape))
    return head + encoded + payload


def convert(hf: Path, out: Path, kind: str) -> None:
    from safetensors.numpy import load_file

    cfg = json.loads((hf / "config.json").read_text())
    weights = load_file(str(hf / "model.safetensors"))
    tokens = vocabulary(hf / "tokenizer.json")
    filters = mel_filters(cfg["num_mel_bins"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        f.write(struct.pack(
            "<11i",
            cfg["vocab_size"], cfg["max_source_positions"], cfg["d_model"],
            cfg["encoder_attention_heads"], cfg["encoder_layers"], cfg["max_target_positions"],
            cfg["d_model"], cfg["decoder_attention_heads"], cfg["decoder_layers"],
            cfg["num_mel_bins"], FTYPE[kind],
        ))
        f.write(struct.pack("<ii", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("<i", len(t)))
            f.write(t)
        n = 0
        for hf_name in sorted(weights):
            if hf_name == "proj_out.weight":
                continue
            f.write(tensor_record(ggml_name(hf_name), weights[hf_name], kind))
            n += 1
    tmp.replace(out)
    print(f"{out}: {kind}, {n} tensors, {len(tokens)} vocabulary entries, {out.stat().st_size / 1e6:.1f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hf", type=Path, default=Path(".cache/whisper/tiny.en/hf"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--type", choices=sorted(FTYPE), default="f16")
    a = ap.parse_args()
    convert(a.hf, a.out, a.type)
    return 0


if __name__ == "__main__":
    sys.exit(main())
