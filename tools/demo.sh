#!/usr/bin/env bash
# `make demo`: voxq's main job on a real speaker model and real speech, end to end.
#   1. calibrate CAM++ on a calibration subset (entropy),
#   2. autoquant: per-group sensitivity, then the smallest mixed-precision model within an EER
#      budget (BUDGET points, default 0.10) on the demo trial subset, ONNX Runtime CPU placement,
#   3. quantize everything (all-int8) for comparison,
#   4. build a CPU engine folder for fp32, all-int8 and the autoquant choice,
#   5. evaluate each engine (EER, minDCF) and time them interleaved in one run (p50, 3 s input),
#   6. print one table; then enroll / verify / identify with the chosen engine.
# The lists are fixtures/trials/demo_{trials,calib}.txt (tools/make_demo_lists.py).
set -euo pipefail
cd "$(dirname "$0")/.."
VOXQ=${VOXQ:-target/release/voxq}
SPEECH=${SPEECH:-.cache/speech}
OUT=${OUT:-out/demo}
BUDGET=${BUDGET:-0.10}
THREADS=${THREADS:-1}   # threads for the timing only; the rest uses ONNX Runtime's default
MODEL=fixtures/models/campplus.json
ONNX=fixtures/models/campplus.onnx
TRIALS=fixtures/trials/demo_trials.txt
CALIB=fixtures/trials/demo_calib.txt
TIMING_WAV=$SPEECH/allison/es/agent-pass.wav
t0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - t0 )) s] $*"; }

rm -rf "$OUT"
mkdir -p "$OUT/engines"

step "1/6 calibrate CAM++ on $(wc -l <"$CALIB") utterances ($CALIB), entropy"
"$VOXQ" calibrate --model "$MODEL" --calib "$CALIB" --audio-root "$SPEECH" --method entropy \
  --out "$OUT/entropy.json"

step "2/6 autoquant: one layer group at a time, then the smallest model within +$BUDGET EER points"
"$VOXQ" autoquant "$MODEL" --calib "$CALIB" --trials "$TRIALS" --audio-root "$SPEECH" \
  --groups preset:campplus --table "$OUT/entropy.json" --target ort-cpu \
  --max-increase "$BUDGET" --cache "$OUT/cache" --quiet --out "$OUT/autoquant"

step "3/6 all-int8 for comparison"
"$VOXQ" quantize "$ONNX" --table "$OUT/entropy.json" --target ort-cpu --out "$OUT/campplus.int8.onnx"

step "4/6 CPU engines: ONNX Runtime fp32, all-int8, autoquant; OpenVINO autoquant (openvino placement)"
"$VOXQ" build "$ONNX" --target cpu --out "$OUT/engines/fp32"
"$VOXQ" build "$OUT/campplus.int8.onnx" --target cpu --out "$OUT/engines/int8"
"$VOXQ" build "$OUT/autoquant/campplus-autoquant-ort-cpu.onnx" --target cpu \
  --out "$OUT/engines/autoquant"
# the same groups quantized with the placement OpenVINO runs accurately
INCLUDE=$(python3 -c 'import json,sys; print(" ".join("--include group:" + g for g in json.load(open(sys.argv[1]))["chosen"]))' "$OUT/autoquant/autoquant.json")
# shellcheck disable=SC2086
"$VOXQ" quantize "$ONNX" --table "$OUT/entropy.json" --target openvino --groups preset:campplus \
  $INCLUDE --out "$OUT/campplus.autoquant.openvino.onnx" >/dev/null
"$VOXQ" build "$OUT/campplus.autoquant.openvino.onnx" --target openvino --threads "$THREADS" \
  --out "$OUT/engines/openvino-autoquant"

step "5/6 evaluate each engine on $TRIALS, then time them interleaved (3 s of speech, $THREADS thread)"
for e in fp32 int8 autoquant openvino-autoquant; do
  "$VOXQ" eval --model "$OUT/engines/$e" --trials "$TRIALS" --audio-root "$SPEECH" \
    --json "$OUT/eval_$e.json"
done
"$VOXQ" bench embed --model "$OUT/engines/fp32" --model "$OUT/engines/int8" \
  --model "$OUT/engines/autoquant" --model "$OUT/engines/openvino-autoquant" \
  --audio "$TIMING_WAV" --seconds 3 --threads "$THREADS" \
  --iterations 40 --json "$OUT/bench.json" >/dev/null

step "6/6 enroll / verify / identify with the autoquant engine"
E="$OUT/engines/autoquant"
S="$OUT/speakers.db"
"$VOXQ" enroll --model "$E" --store "$S" --speaker allison \
  $(head -3 fixtures/trials/demo_enroll_allison.txt | sed "s|^|$SPEECH/|")
"$VOXQ" enroll --model "$E" --store "$S" --speaker june \
  $(head -3 fixtures/trials/demo_enroll_june.txt | sed "s|^|$SPEECH/|")
# the decision threshold: the autoquant engine's EER threshold on the demo trials (step 5)
T=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["all"]["eer_threshold"])' "$OUT/eval_autoquant.json")
"$VOXQ" verify --model "$E" --store "$S" --speaker allison --threshold "$T" \
  "$SPEECH/$(head -1 fixtures/trials/demo_test_allison.txt)"
"$VOXQ" identify --model "$E" --store "$S" --top 2 "$SPEECH/$(head -1 fixtures/trials/demo_test_allison.txt)"

step "done in $(( $(date +%s) - t0 )) s; reports in $OUT/ (autoquant/{autoquant,sensitivity}.md, sensitivity.png)"
python3 tools/demo_table.py "$OUT" | tee "$OUT/summary.md"
