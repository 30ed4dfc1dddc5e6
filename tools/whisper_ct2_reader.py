"""CTranslate2 model.bin reader and `whisper_ct2.py convert`: model.bin -> transformers'
WhisperForConditionalGeneration (saved to .cache/whisper/tiny.en/hf/), checked against
ctranslate2's own encoder and greedy decoding on real speech; also the WhisperConfig and
GenerationConfig builders that tools/whisper_fixture.py shares.

CTranslate2 model.bin layout (binary version 6, little endian; learnt from
ctranslate2/specs/model_spec.py `_serialize`):
  u32 version; str spec_name; u32 revision; u32 n_variables;
  n_variables x { str name; u8 rank; u32 dim[rank]; u8 dtype_id; u32 n_bytes; n_bytes raw }
  u32 n_aliases; n_aliases x { str alias; str variable_name }
  where str = u16 length (including a trailing NUL), then the bytes, then the NUL, and
  dtype_id indexes (float32, int8, int16, int32, float16, bfloat16).
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from whisper_common import (CHECK_CLIPS, CT2_DIR, HF_DIR, die, feature_extractor, log_mel,
                            read_wav, special_ids, strip_prompt)

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
