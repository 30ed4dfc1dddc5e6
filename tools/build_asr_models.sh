#!/usr/bin/env bash
# `make asr-models` (run by `make bench-asr`): the Whisper tiny.en and SmolLM2-135M folders the
# peer table compares, under out/asr-models/ (override with OUT=...):
#   whisper-int8             quantize-whisper's default recipe (autoquant's choice for ONNX
#                            Runtime: encoder stem + blocks 0-1 full int8, blocks 2-3 dynamic;
#                            decoder dynamic)
#   whisper-openvino-fp32    tiny.en with its parts as OpenVINO engine folders
#   whisper-openvino-int8    quantize-whisper --target openvino (dynamic groups as weight-only:
#                            OpenVINO has no fused kernel for DynamicQuantizeLinear ->
#                            MatMulInteger), then built for OpenVINO
#   whisper-openvino-int8-bf16   the same int8 folder with OpenVINO computing its float parts in
#                            bf16 (only on a CPU with AVX-512 BF16 or AMX)
#   smollm2-int8             SmolLM2 with a weight-only int8 decoder (voxq quantize --mode
#                            weight-only), the LLM int8 that keeps the audio LLM's accuracy
#   smollm2-openvino-fp32, smollm2-openvino-int8   the two on OpenVINO
# Each step is skipped when its folder exists (remove out/asr-models to rebuild). The
# bench_asr.py options naming the folders built go to $OUT/bench_args (read by `make bench-asr`).
set -euo pipefail
cd "$(dirname "$0")/.."
VOXQ=${VOXQ:-target/release/voxq}
OUT=${OUT:-out/asr-models}
WHISPER=.cache/whisper/tiny.en/onnx
LLM=.cache/llm/smollm2/onnx
mkdir -p "$OUT"

step() { # name, command...
  local name=$1
  shift
  if [ -e "$OUT/$name" ]; then
    echo "$OUT/$name exists: kept"
  else
    echo "== $OUT/$name"
    "$@"
  fi
}

quantize_whisper() { # out, extra options...
  local out=$1
  shift
  "$VOXQ" quantize-whisper --model "$WHISPER" --calib fixtures/whisper/calib.txt \
    --audio-root .cache/speech --threads 1 "$@" --out "$out"
}

llm_int8() { # out
  local out=$1 tmp="$1.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$LLM/llm.json" "$LLM/tokenizer.json" "$LLM/embed_tokens.f32" "$tmp/"
  "$VOXQ" quantize "$LLM/decoder.onnx" --mode weight-only --target ort-cpu --out "$tmp/decoder.onnx"
  mv "$tmp" "$out"
}

step whisper-int8 quantize_whisper "$OUT/whisper-int8"
step whisper-openvino-fp32 "$VOXQ" build "$WHISPER" --target openvino --out "$OUT/whisper-openvino-fp32"
step whisper-int8-openvino-onnx quantize_whisper "$OUT/whisper-int8-openvino-onnx" --target openvino
step whisper-openvino-int8 "$VOXQ" build "$OUT/whisper-int8-openvino-onnx" --target openvino \
  --out "$OUT/whisper-openvino-int8"
if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  step whisper-openvino-int8-bf16 "$VOXQ" build "$OUT/whisper-int8-openvino-onnx" --target openvino \
    --precision bf16 --out "$OUT/whisper-openvino-int8-bf16"
else
  echo "no AVX-512 BF16 or AMX on this CPU: no bf16 OpenVINO folder"
fi
step smollm2-int8 llm_int8 "$OUT/smollm2-int8"
step smollm2-openvino-fp32 "$VOXQ" build "$LLM" --target openvino --out "$OUT/smollm2-openvino-fp32"
step smollm2-openvino-int8 "$VOXQ" build "$OUT/smollm2-int8" --target openvino \
  --out "$OUT/smollm2-openvino-int8"

args=()
for m in whisper-int8 whisper-openvino-fp32 whisper-openvino-int8 whisper-openvino-int8-bf16; do
  [ -d "$OUT/$m" ] && args+=(--voxq-model "$OUT/$m")
done
for m in smollm2-int8 smollm2-openvino-fp32 smollm2-openvino-int8; do
  [ -d "$OUT/$m" ] && args+=(--voxq-lm "$OUT/$m")
done
echo "${args[@]}" > "$OUT/bench_args"
echo "bench_asr.py options: $(cat "$OUT/bench_args")"
