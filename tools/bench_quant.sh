#!/usr/bin/env bash
# `make bench`: CAM++ fp32 vs int8 on real speech, measured in one run on this machine.
#  1. calibrate once (2 passes over fixtures/trials/calib.txt) -> entropy, percentile, MSE, max tables
#  2. quantize with each table (TensorRT placement) and with entropy for the ort-cpu placement
#  3. evaluate every model on fixtures/trials/trials.txt (EER, minDCF) and compare embeddings
#  4. time fp32 vs int8 embedding latency (3 s and 10 s, 1 and 2 threads), interleaved
#  5. engines of every backend side by side (ONNX Runtime CPU fp32/int8, OpenVINO fp32/bf16/int8)
#     for CAM++ and the distilled ECAPA, interleaved in one run: 1 and 2 threads, 3 s and 10 s,
#     batch 1 and 8; EER of the OpenVINO engines on the trial lists
# Writes out/bench/REPORT.md (Markdown) and JSON beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
V=target/release/voxq
S=.cache/speech
M=fixtures/models/campplus
O=out/bench
mkdir -p "$O"
METHODS="entropy percentile:99.999 percentile:99.99 mse max"

/usr/bin/time -f "%e %M" -o "$O/calibrate.time" \
  $V calibrate --model $M.json --calib fixtures/trials/calib.txt --audio-root $S \
  --method "$(echo $METHODS | tr ' ' ,)" --out "$O/tables" --trt-cache "$O/campplus.entropy.trtcache" --quiet \
  | tee "$O/calibrate.txt"

eval_model() { # json tag
  $V eval --model "$1" --trials fixtures/trials/trials.txt --audio-root $S --quiet \
    --json "$O/$2.eval.json" --embeddings "$O/$2.emb.tsv" > "$O/$2.eval.txt"
}
eval_model $M.json fp32
models=("$M.json")
for m in $METHODS; do
  f=${m/:/-}
  for t in tensorrt ort-cpu; do
    [ "$t" = ort-cpu ] && [ "$m" != entropy ] && continue
    $V quantize $M.onnx --table "$O/tables/$f.json" --out "$O/campplus.$f.$t.onnx" --target $t \
      --report "$O/$f.$t.quantize.json" > "$O/$f.$t.quantize.txt"
    eval_model "$O/campplus.$f.$t.json" "$f.$t"
  done
done
models+=("$O/campplus.entropy.tensorrt.json" "$O/campplus.entropy.ort-cpu.json")
$V bench embed $(printf -- '--model %s ' "${models[@]}") --audio "$S/$(head -1 fixtures/trials/demo_test_allison.txt)" \
  --seconds 3,10 --threads 1,2 --iterations 30 --json "$O/latency.json" > "$O/latency.md"

# 5. engines of every backend side by side
O="$O" bash tools/bench_engines.sh

python3 tools/bench_report.py "$O" > "$O/REPORT.md"
cat "$O/REPORT.md"
