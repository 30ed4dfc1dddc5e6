#!/usr/bin/env bash
# `make loadtest`: load test of `voxq serve` (docs/server.md) on real speech, loopback only.
# For each --max-batch value (8, then 1 for the batching comparison; COMPARE=0: only MAX_BATCH):
#  1. start `voxq serve` with CAM++ on a fresh SQLite store, port 0, 127.0.0.1
#  2. wait for GET /health 200, enroll SPEAKERS (3 utterances each) with POST /v1/speakers
#  3. run examples/loadtest.rs: CLIENTS (200) clients POST /v1/verify for DURATION_S (60) s or
#     MAX_REQUESTS requests, with held-out utterances of the enrolled speakers and of IMPOSTORS
#  4. read the server's peak RSS (VmHWM) and /metrics, stop it with SIGTERM (must exit 0)
# Prints a table and writes out/loadtest/<timestamp>.json (+ logs in out/loadtest/<timestamp>/).
# Fails when any request got an error other than 503 `overloaded`, or the server misbehaved.
#
# Environment: DURATION_S=60 MAX_REQUESTS=200000 CLIENTS=200 MAX_BATCH=8 COMPARE=1
#   SPEAKERS=allison,june,carlo,armelle,menardi IMPOSTORS=july,ivrvoice N_TEST=8 SEED=42
#   MODEL=fixtures/models/campplus.json and, passed on only when set: BATCH_DELAY_MS,
#   BATCH_BUCKET_FRAMES, MAX_CONCURRENT, MAX_QUEUE, TIMEOUT_S, THREADS, DEVICE; SERVER_ARGS (extra).
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/libonnxruntime.so}"

V=target/release/voxq
GEN=target/release/examples/loadtest
S=.cache/speech
MODEL="${MODEL:-fixtures/models/campplus.json}"
DURATION_S="${DURATION_S:-60}"
MAX_REQUESTS="${MAX_REQUESTS:-200000}"
CLIENTS="${CLIENTS:-200}"
MAX_BATCH="${MAX_BATCH:-8}"
COMPARE="${COMPARE:-1}"
SPEAKERS="${SPEAKERS:-allison,june,carlo,armelle,menardi}"
IMPOSTORS="${IMPOSTORS:-july,ivrvoice}"
N_TEST="${N_TEST:-8}"
SEED="${SEED:-42}"
START_TIMEOUT_S="${START_TIMEOUT_S:-300}"

[ -f "$S/MANIFEST.tsv" ] || { echo "error: $S/MANIFEST.tsv missing; run make setup-speech" >&2; exit 1; }
command -v curl >/dev/null || { echo "error: curl not found" >&2; exit 1; }

cargo build --release --bin voxq --example loadtest
"$V" serve --help >/dev/null || { echo "error: $V has no working 'serve' subcommand" >&2; exit 1; }

STAMP=$(date +%Y%m%d-%H%M%S)
O=out/loadtest
RUN_DIR="$O/$STAMP"
mkdir -p "$RUN_DIR"
TMP=$(mktemp -d)
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Enrollment and held-out test utterances (2-8 s), spread over each speaker's files (and languages).
python3 - "$S/MANIFEST.tsv" "$SPEAKERS" "$IMPOSTORS" "$N_TEST" "$RUN_DIR" <<'EOF'
import csv, sys
manifest, speakers, impostors, n_test, out = sys.argv[1:]
speakers = [s for s in speakers.split(",") if s]
impostors = [s for s in impostors.split(",") if s]
n_test = int(n_test)
by = {}
with open(manifest) as f:
    for r in csv.DictReader(f, delimiter="\t"):
        if 2.0 <= float(r["seconds"]) <= 8.0:
            by.setdefault(r["speaker"], []).append(r["relpath"])
def spread(items, n):
    return [items[(2 * i + 1) * len(items) // (2 * n)] for i in range(min(n, len(items)))]
test = []
for s in speakers + impostors:
    files = sorted(by.get(s, []))
    if len(files) < n_test + (3 if s in speakers else 0):
        sys.exit(f"error: speaker {s}: only {len(files)} utterances of 2-8 s in {manifest}")
    if s in speakers:
        enroll = [files[i * len(files) // 3] for i in range(3)]
        with open(f"{out}/enroll_{s}.txt", "w") as f:
            f.write("\n".join(enroll) + "\n")
        files = [p for p in files if p not in enroll]
    test += spread(files, n_test)
with open(f"{out}/test.txt", "w") as f:
    f.write("\n".join(test) + "\n")
EOF
echo "== $(wc -l < "$RUN_DIR/test.txt") test utterances; enrolled: $SPEAKERS; impostors: $IMPOSTORS"

BATCHES="$MAX_BATCH"
if [ "$COMPARE" = 1 ] && [ "$MAX_BATCH" != 1 ]; then BATCHES="$MAX_BATCH 1"; fi

http_code() { # method url [curl args...]: prints the status, body in $TMP/body
  local m=$1 u=$2; shift 2
  curl -sS -o "$TMP/body" -w '%{http_code}' -X "$m" "$@" "$u" 2>"$TMP/curl.err" || true
}

for MB in $BATCHES; do
  tag="mb$MB"
  KEY="loadtest-$RANDOM$RANDOM$RANDOM"
  args=(serve --speaker-model "$MODEL" --store "$TMP/$tag-speakers.db" --host 127.0.0.1 --port 0
        --max-batch "$MB")
  [ -n "${BATCH_DELAY_MS:-}" ] && args+=(--batch-delay-ms "$BATCH_DELAY_MS")
  [ -n "${BATCH_BUCKET_FRAMES:-}" ] && args+=(--batch-bucket-frames "$BATCH_BUCKET_FRAMES")
  [ -n "${MAX_CONCURRENT:-}" ] && args+=(--max-concurrent "$MAX_CONCURRENT")
  [ -n "${MAX_QUEUE:-}" ] && args+=(--max-queue "$MAX_QUEUE")
  [ -n "${TIMEOUT_S:-}" ] && args+=(--timeout-s "$TIMEOUT_S")
  [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
  [ -n "${DEVICE:-}" ] && args+=(--device "$DEVICE")
  # shellcheck disable=SC2206
  [ -n "${SERVER_ARGS:-}" ] && args+=($SERVER_ARGS)
  log="$RUN_DIR/server-$tag.log"
  echo "== max-batch $MB: $V ${args[*]} --api-key ***"
  t0=$(date +%s.%N)
  "$V" "${args[@]}" --api-key "$KEY" > "$log" 2>&1 &
  SERVER_PID=$!

  PORT=""
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    PORT=$(sed -n 's|.*voxq: listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "error: server exited before listening:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "error: no 'listening' line in ${START_TIMEOUT_S} s:" >&2; cat "$log" >&2; exit 1; }
  URL="http://127.0.0.1:$PORT"
  code=""
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    code=$(http_code GET "$URL/health")
    [ "$code" = 200 ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "error: server exited during warm-up:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "error: GET /health still $code after ${START_TIMEOUT_S} s:" >&2; cat "$log" >&2; exit 1; }
  ready_s=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  echo "   listening on $URL, ready after ${ready_s} s"

  IFS=, read -r -a spk <<< "$SPEAKERS"
  for s in "${spk[@]}"; do
    files=()
    while read -r f; do files+=(-F "file=@$S/$f;type=audio/wav"); done < "$RUN_DIR/enroll_$s.txt"
    code=$(http_code POST "$URL/v1/speakers" -H "Authorization: Bearer $KEY" -F "name=$s" "${files[@]}")
    if [ "$code" != 201 ]; then
      echo "error: POST /v1/speakers name=$s (${#files[@]} fields) -> $code: $(head -c 500 "$TMP/body")" >&2
      exit 1
    fi
  done
  code=$(http_code GET "$URL/v1/speakers")
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["speakers"]))' "$TMP/body" 2>/dev/null || echo "?")
  [ "$code" = 200 ] && [ "$n" = "${#spk[@]}" ] \
    || { echo "error: GET /v1/speakers -> $code, $n speakers (expected ${#spk[@]}): $(head -c 500 "$TMP/body")" >&2; exit 1; }
  echo "   enrolled ${#spk[@]} speakers x 3 utterances"

  gen_rc=0
  "$GEN" --url "$URL" --clients "$CLIENTS" --duration-s "$DURATION_S" --max-requests "$MAX_REQUESTS" \
    --speakers "$SPEAKERS" --files "$RUN_DIR/test.txt" --audio-root "$S" --seed "$SEED" \
    --api-key "$KEY" --label "max-batch $MB" --json "$RUN_DIR/load-$tag.json" || gen_rc=$?

  curl -sS -o "$RUN_DIR/metrics-$tag.txt" "$URL/metrics" || true
  rss_kb=$(awk '/^VmHWM:/{print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  stop_rc=""
  for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "error: server still running 30 s after SIGTERM; killing it" >&2
    kill -KILL "$SERVER_PID" || true
  fi
  wait "$SERVER_PID" && stop_rc=0 || stop_rc=$?
  SERVER_PID=""
  printf 'max_batch\t%s\nserver_args\t%s\nport\t%s\nready_s\t%s\npeak_rss_kb\t%s\nserver_exit\t%s\nloadgen_exit\t%s\n' \
    "$MB" "$V ${args[*]} --api-key ***" "$PORT" "$ready_s" "${rss_kb:-}" "$stop_rc" "$gen_rc" \
    > "$RUN_DIR/meta-$tag.tsv"
  echo "   server peak RSS ${rss_kb:-?} kB; exit status after SIGTERM: $stop_rc"
done

python3 - "$RUN_DIR" "$O/$STAMP.json" "$BATCHES" "$MODEL" <<'EOF'
import json, os, re, sys
run_dir, out, batches, model = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]

def metrics(path):
    m = {}
    if not os.path.exists(path):
        return m
    for line in open(path):
        r = re.match(r'^(voxq_batch_size_(?:sum|count)|voxq_rejected_total\{reason="(\w+)"\})\s+(\S+)', line)
        if r:
            key = f"rejected_{r.group(2)}" if r.group(2) else r.group(1).replace("voxq_", "")
            m[key] = float(r.group(3))
    if m.get("batch_size_count"):
        m["mean_batch_size"] = m["batch_size_sum"] / m["batch_size_count"]
    return m

runs, failures = [], []
for mb in batches:
    meta = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{run_dir}/meta-mb{mb}.tsv"))
    lp = f"{run_dir}/load-mb{mb}.json"
    load = json.load(open(lp)) if os.path.exists(lp) else None
    run = {
        "max_batch": int(mb),
        "server": {
            "command": meta["server_args"],
            "model": model,
            "ready_s": float(meta["ready_s"]) if meta["ready_s"] not in ("", "null") else None,
            "peak_rss_kb": int(meta["peak_rss_kb"]) if meta["peak_rss_kb"] else None,
            "exit_status_after_sigterm": int(meta["server_exit"]),
            "metrics": metrics(f"{run_dir}/metrics-mb{mb}.txt"),
            "log": f"{run_dir}/server-mb{mb}.log",
        },
        "load": load,
    }
    runs.append(run)
    if load is None or meta["loadgen_exit"] != "0":
        failures.append(f"max-batch {mb}: load generator failed (exit {meta['loadgen_exit']})")
    elif load["errors"]:
        failures.append(f"max-batch {mb}: {load['errors']} errors other than 503: {load['errors_by_kind']}")
    if meta["server_exit"] != "0":
        failures.append(f"max-batch {mb}: server exit status {meta['server_exit']} after SIGTERM")

def f(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"

cols = ["max-batch", "requests", "ok", "503", "errors", "ok/s", "p50 ms", "p95 ms", "p99 ms",
        "max ms", "target acc", "nontarget acc", "mean batch", "peak RSS MiB"]
rows = []
for r in runs:
    l, s = r["load"] or {}, r["server"]
    lat = l.get("latency_ms", {})
    pct = lambda t: None if not t or t.get("accept_rate") is None else 100 * t["accept_rate"]
    rows.append([str(r["max_batch"]), str(l.get("requests", "-")), str(l.get("ok", "-")),
                 str(l.get("rejected_503", "-")), str(l.get("errors", "-")),
                 f(l.get("throughput_ok_per_s")), f(lat.get("p50")), f(lat.get("p95")),
                 f(lat.get("p99")), f(lat.get("max")), f(pct(l.get("target"))) + "%",
                 f(pct(l.get("nontarget"))) + "%", f(s["metrics"].get("mean_batch_size"), 2),
                 f(s["peak_rss_kb"] / 1024 if s["peak_rss_kb"] else None, 0)])
w = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
print()
print("  ".join(c.rjust(w[i]) for i, c in enumerate(cols)))
for row in rows:
    print("  ".join(v.rjust(w[i]) for i, v in enumerate(row)))

report = {"runs": runs, "test_list": f"{run_dir}/test.txt"}
tp = {r["max_batch"]: (r["load"] or {}).get("throughput_ok_per_s") for r in runs}
if 1 in tp and len(tp) > 1:
    other = next(b for b in tp if b != 1)
    if tp[1] and tp[other] is not None:
        report["throughput_ratio"] = {"numerator_max_batch": other, "denominator_max_batch": 1,
                                      "ratio": tp[other] / tp[1]}
        print(f"\nthroughput ratio max-batch {other} / max-batch 1: {tp[other] / tp[1]:.2f}")
report["failures"] = failures
with open(out, "w") as fh:
    json.dump(report, fh, indent=2)
    fh.write("\n")
print(f"report: {out}")
for msg in failures:
    print(f"FAIL: {msg}", file=sys.stderr)
sys.exit(1 if failures else 0)
EOF
