#!/usr/bin/env python3
"""ONNX Runtime CPU speed of int8 QDQ models against fp32 and against ONNX Runtime's own
quantize_static model of the same network, timed interleaved in one process.

    ort_int8_speed.py --config fixtures/models/campplus.json \
        --model out/campplus.ort-cpu.onnx [--model other.onnx ...] \
        [--ort-qdq conv-pc,all] [--calib fixtures/trials/demo_calib.txt --calib-count 24] \
        [--audio-root .cache/speech] [--seconds 3] [--threads 1] [--rounds 40] [--save-dir DIR]

Needs numpy, onnx, onnxruntime (1.31.1) and kaldi-native-fbank (the pyref venv has them).

--ort-qdq makes ONNX Runtime's own QDQ models of the config's fp32 model with
onnxruntime.quantization.quantize_static, calibrated (MinMax) on the first --calib-count
utterances of --calib (real speech, the model's own front end), uint8 activations and int8
weights (ORT's x86 U8S8 kernels); a model ONNX Runtime cannot open (its optimiser aborts the
process on the Conv-only distilled ECAPA) is said so and left out:
  conv-pc  Conv only, per-channel weights (keeps accuracy: CAM++ cosine to fp32 about 0.995);
  all      every op ORT's quantizer knows, per-tensor weights (its defaults; on CAM++ it quantizes
           the context-aware masking and loses the embedding: cosine about 0.4).

Every model gets one 1-thread session (inter-op 1), the same input (--seconds of real speech
features, batch 1), a warm-up run, then --rounds rounds in which each model runs once in turn
(interleaved, so drift of the machine hits all alike). Printed per model: p50 latency, speed vs
fp32, embedding cosine to fp32 on that input, and what ONNX Runtime's optimiser made of it
(QLinearConv / ConvInteger / MatMulInteger / DynamicQuantizeLinear / float Conv counts, read from
the model ORT saves with SessionOptions.optimized_model_filepath at the extended level).
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_eval as R  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNT = ["QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear",
         "Conv", "FusedConv", "QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul",
         "QLinearConcat", "QLinearSigmoid", "QLinearAveragePool"]


def features(cfg, opts, path):
    return R.features(R.read_wav(path, int(cfg["fbank"]["sample_rate"])), cfg, opts).astype(np.float32)


def ort_qdq(fp32, out, kind, feats, inp):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{inp: f[None]} for f in feats])

        def get_next(self):
            return next(self.it, None)

    kw = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    if kind == "conv-pc":
        kw.update(op_types_to_quantize=["Conv"], per_channel=True)
    elif kind != "all":
        sys.exit(f"error: --ort-qdq {kind}: expected conv-pc or all")
    quantize_static(fp32, out, Reader(), **kw)
    return out


def loads(path, threads):
    """Whether ONNX Runtime opens `path` in a child process (its graph optimisers can abort the
    process on quantize_static's own models, e.g. the Conv-only distilled ECAPA)."""
    import subprocess

    code = ("import onnxruntime as ort, sys; so = ort.SessionOptions(); so.intra_op_num_threads = int(sys.argv[2]); "
            "so.log_severity_level = 3; ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])")
    r = subprocess.run([sys.executable, "-c", code, path, str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{os.path.basename(path)}: ONNX Runtime cannot open it (exit {r.returncode}: {last[:160]}); left out")
    return r.returncode == 0


def session(path, threads, save):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = save
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])  # writes `save`
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", action="append", default=[], help="an int8 QDQ model (repeatable)")
    ap.add_argument("--ort-qdq", default="", help="comma list of conv-pc, all")
    ap.add_argument("--calib", default=os.path.join(ROOT, "fixtures/trials/demo_calib.txt"))
    ap.add_argument("--calib-count", type=int, default=24)
    ap.add_argument("--audio-root", default=os.path.join(ROOT, ".cache/speech"))
    ap.add_argument("--timing-wav", default="allison/es/agent-pass.wav")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--save-dir", help="keep ORT's quantize_static models and optimised graphs here")
    args = ap.parse_args()

    with open(args.config) as f:
        cfg = json.load(f)
    opts = R.fbank_options(cfg)
    inp = cfg.get("input", "feats")
    fp32 = os.path.join(os.path.dirname(os.path.abspath(args.config)), cfg["onnx"])
    work = args.save_dir or tempfile.mkdtemp(prefix="ort_int8_speed_")
    os.makedirs(work, exist_ok=True)

    models = [("fp32", fp32)] + [(os.path.basename(m), m) for m in args.model]
    kinds = [k for k in args.ort_qdq.split(",") if k]
    if kinds:
        with open(args.calib) as f:
            names = [l.split()[0] for l in f if l.strip()][: args.calib_count]
        feats = [features(cfg, opts, os.path.join(args.audio_root, n)) for n in names]
        for k in kinds:
            out = os.path.join(work, f"ort_quantize_static_{k}.onnx")
            ort_qdq(fp32, out, k, feats, inp)
            if loads(out, args.threads):
                models.append((f"ORT quantize_static {k}", out))

    x = features(cfg, opts, os.path.join(args.audio_root, args.timing_wav))
    frames = int(round(args.seconds * 100))
    x = np.ascontiguousarray(np.resize(x, (frames, x.shape[1]))[None])  # repeat to the length
    sess = {}
    for i, (name, path) in enumerate(models):
        opt = os.path.join(work, f"optimised_{i}.onnx")
        sess[name] = session(path, args.threads, opt)
        c = collections.Counter(n.op_type for n in onnx.load(opt).graph.node)
        print(f"{name}: ORT optimised graph: " + ", ".join(f"{k} {c[k]}" for k in COUNT if c[k]))
    ref = sess["fp32"].run(None, {inp: x})[0].ravel()
    cos = {}
    for name in sess:
        e = sess[name].run(None, {inp: x})[0].ravel()
        cos[name] = float(e @ ref / (np.linalg.norm(e) * np.linalg.norm(ref)))
    times = {name: [] for name in sess}
    for _ in range(args.rounds):
        for name, s in sess.items():
            t = time.perf_counter()
            s.run(None, {inp: x})
            times[name].append(time.perf_counter() - t)
    base = np.median(times["fp32"])
    print(f"\n{frames} frames ({args.seconds} s), {args.threads} thread(s), {args.rounds} interleaved rounds, "
          f"ONNX Runtime {ort.__version__}")
    print(f"{'model':44s} {'p50 ms':>8} {'speed':>7} {'cos fp32':>9}")
    for name in sess:
        p50 = np.median(times[name])
        print(f"{name:44s} {1000 * p50:8.2f} {base / p50:6.2f}x {cos[name]:9.5f}")


if __name__ == "__main__":
    main()
