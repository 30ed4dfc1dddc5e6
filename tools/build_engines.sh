#!/usr/bin/env bash
# `make engines`: for each speaker model under fixtures/models (a JSON config whose ONNX file is
# a float model), build out/engines/<name>/cpu-fp32 and cpu-int8 (entropy calibration on
# fixtures/trials/calib.txt, tables kept in out/engines/<name>/). cpu-int8 uses the ORT-CPU
# QDQ placement (Q/DQ also on weighted-op outputs, so ONNX Runtime runs QLinearConv).
# OpenVINO (CPU): openvino-fp32 (true f32), openvino-bf16 where the CPU has bf16 arithmetic, and
# openvino-int8 from the QDQ model quantized with the OpenVINO placement.
# TensorRT: looked for as `trtexec` on PATH or under $TENSORRT_ROOT/bin, with a GPU from
# nvidia-smi. Where both are present, trt-int8 (from a QDQ model with the TensorRT placement,
# strongly typed build) and trt-fp16 (from the float model, for comparison) are built too, each
# with its layer report (layers.md). Without them, one line says so and only CPU engines are
# built (exit 0); TRT=1 makes TensorRT required.
set -euo pipefail
cd "$(dirname "$0")/.."
VOXQ=target/release/voxq
OUT=${OUT:-out/engines}
SPEECH=.cache/speech
OV_PLACEMENT=${OV_PLACEMENT:-openvino}

trtexec=$(command -v trtexec || true)
if [ -z "$trtexec" ] && [ -n "${TENSORRT_ROOT:-}" ] && [ -x "$TENSORRT_ROOT/bin/trtexec" ]; then
  trtexec="$TENSORRT_ROOT/bin/trtexec"
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
with_trt=0
if [ -z "$trtexec" ]; then
  if [ "${TRT:-0}" = 1 ]; then
    echo "error: TRT=1 but TensorRT was not found (no trtexec on PATH or under TENSORRT_ROOT/bin)" >&2
    exit 1
  fi
  echo "TensorRT not found (no trtexec on PATH or under TENSORRT_ROOT/bin): building CPU engines only"
elif [ -z "$gpu" ]; then
  if [ "${TRT:-0}" = 1 ]; then
    echo "error: TRT=1: found $trtexec but no NVIDIA GPU (nvidia-smi lists none)" >&2
    exit 1
  fi
  echo "TensorRT found ($trtexec) but no NVIDIA GPU (nvidia-smi lists none): building CPU engines only"
else
  with_trt=1
  echo "TensorRT: $trtexec on $gpu: building trt-int8 and trt-fp16 as well"
fi

for cfg in fixtures/models/*.json; do
  case "$cfg" in *.eval.json) continue ;; esac
  name=$(basename "$cfg" .json)
  onnx=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["onnx"])' "$cfg")
  model="fixtures/models/$onnx"
  [ -f "$model" ] || continue
  # float models only: a QDQ fixture (ORT's own quantizer output) is not a source here
  if "$VOXQ" inspect "$model" --json | grep -q '"QuantizeLinear"'; then continue; fi
  dir="$OUT/$name"
  mkdir -p "$dir"
  echo "== $name" >&2
  "$VOXQ" build "$model" --target cpu --out "$dir/cpu-fp32"
  [ -f "$dir/entropy.json" ] || "$VOXQ" calibrate --model "$cfg" --calib fixtures/trials/calib.txt \
    --audio-root "$SPEECH" --method entropy --out "$dir/entropy.json" --quiet
  "$VOXQ" quantize "$model" --table "$dir/entropy.json" --target ort-cpu --out "$dir/$name.int8.onnx" >/dev/null
  "$VOXQ" build "$dir/$name.int8.onnx" --target cpu --out "$dir/cpu-int8"
  "$VOXQ" build "$model" --target openvino --precision fp32 --out "$dir/openvino-fp32"
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
    "$VOXQ" build "$model" --target openvino --precision bf16 --out "$dir/openvino-bf16"
  fi
  "$VOXQ" quantize "$model" --table "$dir/entropy.json" --target $OV_PLACEMENT --out "$dir/$name.ov.onnx" >/dev/null
  "$VOXQ" build "$dir/$name.ov.onnx" --target openvino --out "$dir/openvino-int8"
  if [ "$with_trt" = 1 ]; then
    "$VOXQ" quantize "$model" --table "$dir/entropy.json" --target tensorrt --out "$dir/$name.qdq.onnx" >/dev/null
    "$VOXQ" build "$dir/$name.qdq.onnx" --target tensorrt --out "$dir/trt-int8"
    "$VOXQ" build "$model" --target tensorrt --precision fp16 --out "$dir/trt-fp16"
  fi
done
if [ "$with_trt" = 1 ]; then
  echo "engines: $OUT/<model>/{cpu-fp32,cpu-int8,openvino-*,trt-int8,trt-fp16}/manifest.json (layer reports: trt-*/layers.md)" >&2
else
  echo "engines: $OUT/<model>/{cpu-fp32,cpu-int8,openvino-fp32,openvino-bf16,openvino-int8}/manifest.json" >&2
fi
