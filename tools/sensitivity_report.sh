#!/usr/bin/env bash
# `make sensitivity`: the issue-4 tables. For each model, `voxq sensitivity` (fp32, all-int8,
# each group alone) and `voxq autoquant` (smallest model within the budget), reports in
# out/sensitivity/<name>/. Measurements are cached (.voxq-cache/sensitivity), so a re-run
# only measures what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VOXQ=target/release/voxq
OUT=${OUT:-out/sensitivity}
SPEECH=.cache/speech
CAL=fixtures/trials/calib.txt
THREADS=${THREADS:-0}

run() { # name model groups trials-or-"-" budget-args...
  local name=$1 model=$2 groups=$3 trials=$4
  shift 4
  local t=()
  [ "$trials" != "-" ] && t=(--trials "$trials")
  echo "== $name: $model, groups $groups" >&2
  "$VOXQ" autoquant "$model" --calib "$CAL" "${t[@]}" --audio-root "$SPEECH" --groups "$groups" \
    --method entropy --threads "$THREADS" --out "$OUT/$name" "$@"
}

run campplus fixtures/models/campplus.json preset:campplus fixtures/trials/trials.txt --max-increase 0.10
run ecapa_distil fixtures/models/ecapa_distil.json preset:ecapa-speechbrain fixtures/trials/distil_known.txt --max-increase 0.10
# a tighter budget than all-int8 meets, to show the mixed-precision choice on ECAPA-TDNN
run ecapa_distil_0.05 fixtures/models/ecapa_distil.json preset:ecapa-speechbrain fixtures/trials/distil_known.txt --max-increase 0.05
run campplus_depth2_sqnr fixtures/models/campplus.json depth=2 - --metric sqnr --min-sqnr 30
echo "reports: $OUT/*/{sensitivity,autoquant}.{md,json} and sensitivity.png" >&2
