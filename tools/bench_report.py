#!/usr/bin/env python3
"""Turns the files tools/bench_quant.sh wrote into out/bench/REPORT.md (standard library only)."""
import json, math, os, sys

d = sys.argv[1]

def emb(path):
    out = {}
    for line in open(path):
        name, vals = line.rstrip("\n").split("\t")
        out[name] = [float(v) for v in vals.split()]
    return out

def cos(a, b):
    ab = sum(x * y for x, y in zip(a, b))
    return ab / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

fp32 = emb(os.path.join(d, "fp32.emb.tsv"))
base = json.load(open(os.path.join(d, "fp32.eval.json")))["all"]
size = lambda p: os.path.getsize(p) / 2**20
rows = [("fp32", "-", "fixtures/models/campplus.onnx", "fp32")]
for f in sorted(os.listdir(d)):
    if f.endswith(".eval.json") and f != "fp32.eval.json":
        tag = f[: -len(".eval.json")]
        method, target = tag.rsplit(".", 1)
        rows.append((method, target, os.path.join(d, f"campplus.{tag}.onnx"), tag))
print("## CAM++ int8 vs fp32 (voxq calibrate / quantize / eval, `make bench`)\n")
cal = open(os.path.join(d, "calibrate.txt")).read().strip().splitlines()[-1]
wall, rss_kb = open(os.path.join(d, "calibrate.time")).read().split()
print(f"{cal[0].upper()}{cal[1:]}  \nwhole command: {float(wall):.0f} s wall, peak RSS {int(rss_kb) / 1024:.0f} MiB.\n")
print("| model | placement | EER | ΔEER | minDCF | cosine to fp32 (mean / min) | ONNX file | deployable |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for method, target, onnx, tag in rows:
    m = json.load(open(os.path.join(d, f"{tag}.eval.json")))["all"]
    if tag == "fp32":
        c = "1 / 1"
    else:
        e = emb(os.path.join(d, f"{tag}.emb.tsv"))
        cs = [cos(e[k], fp32[k]) for k in fp32]
        c = f"{sum(cs) / len(cs):.4f} / {min(cs):.4f}"
    if tag == "fp32":
        sizes = json.load(open(os.path.join(d, "entropy.tensorrt.quantize.json")))["sizes"]["fp32"]
    else:
        sizes = json.load(open(os.path.join(d, f"{tag}.quantize.json")))["sizes"]["quantized"]
    dep = f"{sizes['deployable_bytes'] / 2**20:.2f} MiB"
    print(f"| {method} | {target} | {m['eer'] * 100:.3f}% | {(m['eer'] - base['eer']) * 100:+.3f} | {m['min_dcf']:.4f} | {c} | {size(onnx):.2f} MiB | {dep} |")
print("\n### Embedding latency, fp32 vs int8 (ONNX Runtime CPU, interleaved in one run)\n")
print(open(os.path.join(d, "latency.md")).read())

for name, trials in (("campplus", "fixtures/trials/trials.txt"), ("ecapa_distil", "fixtures/trials/distil_known.txt")):
    md = os.path.join(d, f"engines.{name}.md")
    if not os.path.exists(md):
        continue
    print(f"\n### {name}: engines of every backend side by side (`voxq bench engines`, interleaved in one run)\n")
    print(open(md).read())
    ed = os.path.join(d, "engines", name)
    ref = emb(os.path.join(ed, "cpu-fp32.emb.tsv"))
    print(f"EER of each engine on `{trials}`, and embedding cosine to ONNX Runtime fp32 (mean / min):\n")
    print("| engine | EER | minDCF | cosine to cpu-fp32 |")
    print("|---|---:|---:|---:|")
    for e in ("cpu-fp32", "cpu-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"):
        f = os.path.join(ed, f"{e}.eval.json")
        if not os.path.exists(f):
            continue
        m = json.load(open(f))["all"]
        x = emb(os.path.join(ed, f"{e}.emb.tsv"))
        cs = [cos(x[k], ref[k]) for k in ref]
        print(f"| {e} | {m['eer'] * 100:.3f}% | {m['min_dcf']:.4f} | {sum(cs) / len(cs):.4f} / {min(cs):.4f} |")
