#!/usr/bin/env bash
# Engines of every backend side by side (part of `make bench`; alone: `bash tools/bench_engines.sh`):
# for CAM++ and the distilled ECAPA-TDNN (both calibrated with percentile 99.999 on calib.txt: one
# method for both, fixed in advance, not picked per model on the trial lists), ONNX Runtime
# CPU fp32 (first the source model exactly as given, `--as-is`: the baseline every speed-up is
# against; then voxq's fp32 engine with its exact rewrites) / int8 (ort-cpu placement) and
# OpenVINO fp32 / bf16 (where the CPU has bf16) / int8
# (openvino placement) engines, timed interleaved in one `voxq bench engines` run (batch 1 and 8,
# 3 s and 10 s, 1 and 2 threads), and each engine's EER and embeddings on its trial list.
# Writes $O/engines.<model>.{md,json} and $O/engines/<model>/<engine>.{eval.json,emb.tsv}.
set -euo pipefail
cd "$(dirname "$0")/.."
V=target/release/voxq
S=.cache/speech
O=${O:-out/bench}
mkdir -p "$O/tables"
[ -f "$O/tables/campplus.percentile.json" ] || $V calibrate --model fixtures/models/campplus.json \
  --calib fixtures/trials/calib.txt --audio-root $S --method percentile:99.999 \
  --out "$O/tables/campplus.percentile.json" --quiet >/dev/null
engine_set() { # name model.json table trials
  local name=$1 cfg=$2 table=$3 trials=$4 onnx=${2%.json}.onnx E="$O/engines/$1"
  mkdir -p "$E"
  $V quantize "$onnx" --table "$table" --target ort-cpu --out "$E/$name.ort-cpu.onnx" >/dev/null
  $V quantize "$onnx" --table "$table" --target openvino --out "$E/$name.openvino.onnx" >/dev/null
  rm -rf "$E"/cpu-* "$E"/openvino-*
  $V build "$onnx" --target cpu --as-is --out "$E/cpu-fp32-as-is" >/dev/null
  $V build "$onnx" --target cpu --out "$E/cpu-fp32" >/dev/null
  $V build "$E/$name.ort-cpu.onnx" --target cpu --out "$E/cpu-int8" >/dev/null
  $V build "$onnx" --target openvino --precision fp32 --out "$E/openvino-fp32" >/dev/null
  $V build "$E/$name.openvino.onnx" --target openvino --out "$E/openvino-int8" >/dev/null
  local engines=("$E/cpu-fp32-as-is" "$E/cpu-fp32" "$E/cpu-int8" "$E/openvino-fp32")
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
engine_set campplus fixtures/models/campplus.json "$O/tables/campplus.percentile.json" fixtures/trials/trials.txt
[ -f "$O/tables/ecapa_distil.percentile.json" ] || $V calibrate --model fixtures/models/ecapa_distil.json --calib fixtures/trials/calib.txt --audio-root $S \
  --method percentile:99.999 --out "$O/tables/ecapa_distil.percentile.json" --quiet >/dev/null
engine_set ecapa_distil fixtures/models/ecapa_distil.json "$O/tables/ecapa_distil.percentile.json" \
  fixtures/trials/distil_known.txt

