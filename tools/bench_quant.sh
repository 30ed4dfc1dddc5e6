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

# 5. engines side by side
engine_set() { # name model.json table trials
  local name=$1 cfg=$2 table=$3 trials=$4 onnx=${2%.json}.onnx E="$O/engines/$1"
  mkdir -p "$E"
  $V quantize "$onnx" --table "$table" --target ort-cpu --out "$E/$name.ort-cpu.onnx" >/dev/null
  $V quantize "$onnx" --table "$table" --target openvino --out "$E/$name.openvino.onnx" >/dev/null
  rm -rf "$E"/cpu-* "$E"/openvino-*
  $V build "$onnx" --target cpu --out "$E/cpu-fp32" >/dev/null
  $V build "$E/$name.ort-cpu.onnx" --target cpu --out "$E/cpu-int8" >/dev/null
  $V build "$onnx" --target openvino --precision fp32 --out "$E/openvino-fp32" >/dev/null
  $V build "$E/$name.openvino.onnx" --target openvino --out "$E/openvino-int8" >/dev/null
  local engines=("$E/cpu-fp32" "$E/cpu-int8" "$E/openvino-fp32")
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
    $V build "$onnx" --target openvino --precision bf16 --out "$E/openvino-bf16" >/dev/null
    engines+=("$E/openvino-bf16")
  fi
  engines+=("$E/openvino-int8")
  $V bench engines "${engines[@]}" --batches 1,8 --frames 300,1000 --threads 1,2 --seconds 3 \
    --json "$O/engines.$name.json" > "$O/engines.$name.md"
  for e in "${engines[@]}"; do
    $V eval --model "$e" --trials "$trials" --audio-root $S --quiet --json "$E/$(basename "$e").eval.json" \
      --embeddings "$E/$(basename "$e").emb.tsv" >/dev/null
  done
}
engine_set campplus $M.json "$O/tables/entropy.json" fixtures/trials/trials.txt
$V calibrate --model fixtures/models/ecapa_distil.json --calib fixtures/trials/calib.txt --audio-root $S \
  --method percentile:99.999 --out "$O/tables/ecapa_distil.percentile.json" --quiet >/dev/null
engine_set ecapa_distil fixtures/models/ecapa_distil.json "$O/tables/ecapa_distil.percentile.json" \
  fixtures/trials/distil_known.txt

python3 tools/bench_report.py "$O" > "$O/REPORT.md"
cat "$O/REPORT.md"
