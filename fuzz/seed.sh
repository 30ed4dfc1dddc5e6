#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets in fuzz/seeds/<target>/ (git-ignored) from real
# files of this repository and of the set-up caches, each cut to the target's input size:
#
#   onnx_model     ONNX backend node-test models (.cache: `make setup-onnx-tests` / pyref venv),
#                  the small fixture models, and the big fixture/output models with every
#                  initializer cut to one element (graph, names and attributes kept; needs the
#                  pyref venv's `onnx`, skipped without it)
#   wav_fbank,     fixture WAVs and .cache/speech WAVs cut to a few KB, rewritten as 8/16/24/32-bit
#   upload_decode  integer, float and WAVE_FORMAT_EXTENSIBLE at several rates and channel counts;
#                  upload_decode also gets the FLAC/MP3/Ogg fixtures, whole and truncated
#   calib_table    calibration tables (out/**: first tensors of each), TensorRT caches written by
#                  `voxq calibrate --trt-cache` (out/**), a cache per table, and hand-made ones
#   manifest       out/engines/*/*/manifest.json, plus a TensorRT manifest with GPU and profile
#   group_spec     exporter/presets/*.json, a spec with descriptions, selector lists
#   trt_reports    trtexec performance logs, --exportOutput JSON, --exportLayerInfo JSON
#   (all)          fixtures/fuzz-regressions/<target>-*: inputs that once made a target fail
#
# Files that are missing (no set-up run, no out/) are skipped; the hand-made seeds always exist.
# Usage: fuzz/seed.sh [SEED_DIR]   (default fuzz/seeds; the folder is rebuilt from scratch)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-fuzz/seeds}
PYREF=.cache/pyref/bin/python
ONNX_PY=""
if [ -x "$PYREF" ] && "$PYREF" -c 'import onnx' 2>/dev/null; then
  ONNX_PY=$PYREF
fi
rm -rf "$SEEDS"
mkdir -p "$SEEDS"
python3 - "$SEEDS" "$ONNX_PY" <<'PY'
import glob, json, os, re, shutil, struct, subprocess, sys, wave

seeds, onnx_py = sys.argv[1], sys.argv[2]
counts = {}


def put(target, name, data):
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120]
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1


# ---------------------------------------------------------------------------------------------
# onnx_model

node_models = sorted(
    set(glob.glob(".cache/onnx-node-tests/*/model.onnx"))
    | set(glob.glob(".cache/**/onnx/backend/test/data/node/*/model.onnx", recursive=True)),
)
by_test = {}
for p in node_models:
    test = os.path.basename(os.path.dirname(p))
    if os.path.getsize(p) <= 64 * 1024:
        by_test.setdefault(test, p)
tests = sorted(by_test)
step = max(1, len(tests) // 400)
for test in tests[::step][:400]:
    put("onnx_model", "node_" + test + ".onnx", open(by_test[test], "rb").read())

for p in sorted(glob.glob("fixtures/**/*.onnx", recursive=True)):
    if os.path.getsize(p) <= 1 << 20:
        put("onnx_model", "fixture_" + p.replace("/", "_"), open(p, "rb").read())

SHRINK = r'''
import sys, onnx
from onnx import numpy_helper
src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src, load_external_data=False)
def shrink(t):
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return False
    a = numpy_helper.to_array(t)
    if a.size <= 16:
        return True
    small = a.reshape(-1)[:1].reshape([1] * a.ndim)
    t.CopyFrom(numpy_helper.from_array(small, t.name))
    return True
def graph(g):
    for t in g.initializer:
        if not shrink(t):
            sys.exit(0)
    for n in g.node:
        for a in n.attribute:
            if a.HasField("t"):
                shrink(a.t)
            if a.HasField("g"):
                graph(a.g)
            for sg in a.graphs:
                graph(sg)
graph(m.graph)
onnx.save(m, dst)
'''
if onnx_py:
    big = [p for p in glob.glob("fixtures/**/*.onnx", recursive=True) if os.path.getsize(p) > 1 << 20]
    big += sorted(glob.glob("out/engines/*/*.int8.onnx"))[:3]
    tmp = os.path.join(seeds, ".shrunk.onnx")
    for p in sorted(big):
        if os.path.exists(tmp):
            os.remove(tmp)
        r = subprocess.run([onnx_py, "-c", SHRINK, p, tmp], capture_output=True, text=True)
        if r.returncode == 0 and os.path.exists(tmp) and os.path.getsize(tmp) <= 1 << 20:
            put("onnx_model", "shrunk_" + p.replace("/", "_"), open(tmp, "rb").read())
        elif r.returncode != 0:
            print(f"seed: skipped {p}: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    if os.path.exists(tmp):
        os.remove(tmp)

# ---------------------------------------------------------------------------------------------
# Audio


def read_wav(path, max_frames):
    """16-bit PCM frames (mono) of a WAV, as a list of ints; None when not 16-bit PCM."""
    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2:
                return None
            ch = w.getnchannels()
            raw = w.readframes(max_frames)
    except (wave.Error, EOFError, OSError):
        return None
    vals = struct.unpack("<%dh" % (len(raw) // 2), raw)
    return list(vals[::ch])


def wav_bytes(samples, rate, channels, fmt, bits, extensible=False):
    """A WAV file of `samples` (16-bit ints) in format `fmt` ('int' or 'float') and `bits`."""
    frames = []
    for s in samples:
        for c in range(channels):
            v = s if c == 0 else -s
            if fmt == "float":
                frames.append(struct.pack("<f", v / 32768.0))
            elif bits == 8:
                frames.append(bytes([(v >> 8) + 128]))
            elif bits == 16:
                frames.append(struct.pack("<h", v))
            elif bits == 24:
                frames.append(struct.pack("<i", v << 8)[:3])
            else:
                frames.append(struct.pack("<i", v << 16))
    data = b"".join(frames)
    block = channels * bits // 8
    code = 3 if fmt == "float" else 1
    if extensible:
        guid = struct.pack("<H", code) + bytes.fromhex("000000001000800000aa00389b71")
        fmt_chunk = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits,
                                22, bits, (1 << channels) - 1) + guid
    else:
        fmt_chunk = struct.pack("<HHIIHH", code, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    if fmt == "float":
        body += b"fact" + struct.pack("<II", 4, len(samples))
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


wav_sources = ["fixtures/audio/speech_16k.wav", "fixtures/audio/speech_stereo_44k.wav"]
wav_sources += sorted(glob.glob("fixtures/fbank/wav/*.wav"))[:4]
speakers = sorted(glob.glob(".cache/speech/*/"))
for s in speakers[:6]:
    found = sorted(glob.glob(os.path.join(s, "**/*.wav"), recursive=True))
    if found:
        wav_sources.append(found[len(found) // 2])

variants = [  # (rate, channels, fmt, bits, extensible)
    (16000, 1, "int", 16, False),
    (8000, 1, "int", 8, False),
    (16000, 2, "int", 24, False),
    (44100, 2, "int", 16, False),
    (48000, 1, "int", 32, False),
    (22050, 1, "float", 32, False),
    (16000, 1, "int", 16, True),
    (11025, 2, "float", 32, True),
]
for i, src in enumerate(wav_sources):
    pcm = read_wav(src, 4000)
    if not pcm:
        continue
    # Skip the leading silence so the clip has speech in it.
    start = next((k for k, v in enumerate(pcm) if abs(v) > 500), 0)
    pcm = pcm[start:start + 1600] or pcm[:1600]
    rate, ch, fmt, bits, ext = variants[i % len(variants)]
    name = os.path.splitext(src.replace("/", "_"))[0]
    data = wav_bytes(pcm, rate, ch, fmt, bits, ext)
    put("wav_fbank", f"{name}_{rate}_{ch}ch_{fmt}{bits}.wav", data)
    put("upload_decode", f"{name}_{rate}_{ch}ch_{fmt}{bits}.wav", data)
base = read_wav("fixtures/audio/speech_16k.wav", 8000) or [int(1000 * ((k % 40) - 20)) for k in range(1600)]
base = base[-1600:]
for rate, ch, fmt, bits, ext in variants:
    data = wav_bytes(base, rate, ch, fmt, bits, ext)
    put("wav_fbank", f"variant_{rate}_{ch}ch_{fmt}{bits}{'_ext' if ext else ''}.wav", data)

for p in sorted(glob.glob("fixtures/audio/*")):
    if p.endswith((".flac", ".mp3", ".ogg")):
        data = open(p, "rb").read()
        put("upload_decode", os.path.basename(p), data)
        put("upload_decode", "head4k_" + os.path.basename(p), data[:4096])

# ---------------------------------------------------------------------------------------------
# Calibration tables and TensorRT caches


def trt_cache(table, header="TRT-8601-EntropyCalibration2"):
    lines = [header]
    for name, r in sorted(table["tensors"].items()):
        lines.append("%s: %08x" % (name, struct.unpack(">I", struct.pack(">f", r["scale"]))[0]))
    return "\n".join(lines) + "\n"


tables = sorted(glob.glob("out/**/tables/*.json", recursive=True)) + sorted(
    glob.glob("out/**/entropy.json", recursive=True))
for p in tables[:8]:
    try:
        t = json.load(open(p))
    except (ValueError, OSError):
        continue
    if t.get("format") != "voxq-calibration/1":
        continue
    names = sorted(t["tensors"])[:6]
    small = dict(t, tensors={k: t["tensors"][k] for k in names})
    put("calib_table", "table_" + p.replace("/", "_"), json.dumps(small, indent=2, sort_keys=True) + "\n")
    put("calib_table", "cache_of_" + p.replace("/", "_") + ".cache", trt_cache(small))
for p in sorted(glob.glob("out/**/*.cache", recursive=True) + glob.glob("out/**/*.trtcache", recursive=True))[:4]:
    lines = open(p, errors="replace").read().splitlines()[:12]
    put("calib_table", "voxq_" + p.replace("/", "_"), "\n".join(lines) + "\n")
hand = {
    "format": "voxq-calibration/1",
    "method": "percentile:99.99",
    "tensors": {
        "/xvector/tdnn/linear/Conv_output_0": {
            "amax": 12.5, "scale": 12.5 / 127, "fallback": "constant tensor: amax from max |x|",
            "stats": {"min": -3.0, "max": 12.5, "mean": 0.25, "std": 1.5, "count": 4800, "nonfinite": 0},
        },
        "input: with spaces and: colons": {"amax": 1.0, "scale": 1.0 / 127},
        "feats": {"amax": 30.0, "scale": 30.0 / 127},
    },
}
put("calib_table", "hand_table.json", json.dumps(hand, indent=2) + "\n")
put("calib_table", "hand_cache_trt10.cache", trt_cache(hand, "TRT-100300-EntropyCalibration2"))
put("calib_table", "hand_cache_crlf.cache", trt_cache(hand, "TRT-8601-MinMaxCalibration").replace("\n", "\r\n"))

# ---------------------------------------------------------------------------------------------
# Engine manifests

for p in sorted(glob.glob("out/engines/*/*/manifest.json"))[:8]:
    put("manifest", p.replace("/", "_"), open(p, "rb").read())
trt_manifest = {
    "format": 1, "voxq_version": "0.1.0", "created_unix": 1790000000, "target": "tensorrt",
    "precision": "int8",
    "source_model": {"file": "campplus.qdq.onnx", "sha256": "ab" * 32},
    "engine_file": "model.plan",
    "builder": {"name": "trtexec", "version": "10.13.0"},
    "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
    "inputs": [{"name": "feats", "dtype": "float32", "shape": [-1, -1, 80],
                "dim_names": ["batch", "frames", ""],
                "profile": {"min": [1, 100, 80], "opt": [8, 300, 80], "max": [32, 3000, 80]}}],
    "outputs": [{"name": "embedding", "dtype": "float32", "shape": [-1, 192], "dim_names": ["batch", ""]}],
    "config_file": "model.json",
}
put("manifest", "hand_tensorrt_manifest.json", json.dumps(trt_manifest, indent=2))
cpu = dict(trt_manifest, target="cpu", precision="fp32", engine_file="model.onnx",
           builder={"name": "onnxruntime", "version": "1.31.1"},
           session={"graph_optimization_level": 3, "intra_threads": 0})
del cpu["gpu"]
put("manifest", "hand_cpu_manifest.json", json.dumps(cpu))

# ---------------------------------------------------------------------------------------------
# Group specs and selectors

for p in sorted(glob.glob("exporter/presets/*.json")):
    put("group_spec", "preset_" + os.path.basename(p), open(p, "rb").read())
spec = {
    "name": "hand",
    "description": "every feature a spec may use",
    "groups": [
        {"name": "stem", "description": "input side", "patterns": ["^/head/", "^/Transpose$"]},
        {"name": "blocks", "patterns": ["^/xvector/block[0-9]+/", "^/blocks\\.[1-3]/"]},
        {"name": "nothing", "patterns": ["^/does/not/match$"]},
        {"name": "tail", "patterns": ["(?i)dense|fc", "Squeeze$"]},
    ],
}
put("group_spec", "hand_spec.json", json.dumps(spec, indent=2))
put("group_spec", "selectors.txt", "group:block1\nnode:^/xvector/.*Conv$\nop:Conv\nfcm\nop:relu\n"
    "node:(?i)transpose\ngroup:(root)\n")

# ---------------------------------------------------------------------------------------------
# trtexec outputs

perf = """&&&& RUNNING TensorRT.trtexec [TensorRT v101300] # trtexec --loadEngine=model.plan
[11/21/2026-10:00:00] [I] === Performance summary ===
[11/21/2026-10:00:00] [I] Throughput: 1523.7 qps
[11/21/2026-10:00:00] [I] Latency: min = 0.61 ms, max = 1.2 ms, mean = 0.655 ms, median = 0.65 ms, percentile(90%) = 0.67 ms, percentile(95%) = 0.68 ms, percentile(99%) = 0.71 ms
[11/21/2026-10:00:00] [I] Enqueue Time: min = 0.01 ms, max = 0.1 ms, mean = 0.02 ms, median = 0.02 ms, percentile(99%) = 0.05 ms
[11/21/2026-10:00:00] [I] GPU Compute Time: min = 0.5 ms, max = 1.0 ms, mean = 0.56 ms, median = 0.55 ms, percentile(90%) = 0.57 ms, percentile(95%) = 0.58 ms, percentile(99%) = 0.6 ms
&&&& PASSED TensorRT.trtexec [TensorRT v101300]
"""
put("trt_reports", "perf.log", perf)
put("trt_reports", "failed.log", "&&&& RUNNING TensorRT.trtexec [TensorRT v101300]\n[I] parsing\n"
    "[E] Error[4]: ITensor::getDimensions: Error Code 4: shape mismatch\n[E] Engine could not be created\n"
    "&&&& FAILED TensorRT.trtexec\n")
put("trt_reports", "outputs.json", '[\n  { "name" : "embedding"\n  , "dimensions" : "2x3"\n'
    '  , "values" : [ 0.5, -1, 2, 3, 4, 5e-3 ]\n  }\n, { "name" : "scores", "dimensions" : "1", "values" : [1] }\n]\n')
layers = {"Layers": [
    {"Name": "Reformatting CopyNode for Input Tensor 0 to /xvector/tdnn/conv", "LayerType": "Reformat",
     "Inputs": [{"Name": "feats", "Dimensions": [8, 80, 300], "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "r0", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
    {"Name": "/xvector/tdnn/conv + relu", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "r0", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
     "Outputs": [{"Name": "t", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "ParameterType": "Convolution", "Weights": {"Type": "Int8", "Count": 30720}},
    {"Name": "/head/fc", "LayerType": "CaskGemmConvolution",
     "Inputs": [{"Name": "p", "Format/Datatype": "Row major linear FP16 format"}],
     "Outputs": [{"Name": "embedding", "Format/Datatype": "Float"}],
     "ParameterType": "Convolution", "Weights": {"Type": "Half", "Count": 196608}},
    {"Name": "/pool/mean", "LayerType": "Reduce", "Inputs": [{"Format/Datatype": "Int32"}]},
], "Bindings": ["feats", "embedding"]}
put("trt_reports", "layers.json", json.dumps(layers, indent=1))
put("trt_reports", "layers_names_only.json", '{"Layers": ["a", "b"], "Bindings": []}')

# Inputs that once failed (fixtures/fuzz-regressions/<target>-*): every run replays them.
for p in sorted(glob.glob("fixtures/fuzz-regressions/*")):
    target = os.path.basename(p).split("-", 1)[0]
    if target in counts:
        put(target, "regression_" + os.path.basename(p), open(p, "rb").read())

for t in sorted(counts):
    print(f"seed: {t}: {counts[t]} files")
PY
touch "$SEEDS/.complete"
