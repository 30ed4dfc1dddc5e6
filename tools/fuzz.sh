#!/usr/bin/env bash
# `make fuzz`: runs the cargo-fuzz (libFuzzer) targets of fuzz/ for a bounded time each and
# writes a summary (executions, time, crashes/timeouts/out-of-memory per target) to
# out/fuzz/summary.md and out/fuzz/summary.json. Exits non-zero when a target failed.
#
#   tools/fuzz.sh                    every target for FUZZ_SECONDS (60) s
#   tools/fuzz.sh TARGET [SECONDS]   one target (or a comma-separated list; `all`)
#   FUZZ_SECONDS=1800 make fuzz      longer campaigns
#   FUZZ_RUNS=1000000 tools/fuzz.sh onnx_model 1800
#                                    stop at 1,000,000 executions or 30 min, whichever first
#
# Other settings: FUZZ_SANITIZER=address|none (default address: libFuzzer's sanitizer flags need
# RUSTC_BOOTSTRAP=1 on the stable toolchain, set here), FUZZ_EXTRA="-jobs=2 ..." (more libFuzzer
# flags), FUZZ_RESEED=1 (rebuild fuzz/seeds), FUZZ_OUT (default out/fuzz), FUZZ_NO_BUILD=1 (run
# the binaries built last, e.g. while others edit the libraries).
#
# Set-up, done once and then offline: cargo-fuzz $CARGO_FUZZ_VERSION is installed from crates.io
# into .cache/cargo-fuzz/ (git-ignored); the seed corpora are built by fuzz/seed.sh into
# fuzz/seeds/<target>/; what libFuzzer finds is kept in fuzz/corpus/<target>/ and failing
# inputs in fuzz/artifacts/<target>/ (both git-ignored). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
CARGO_FUZZ_VERSION=0.13.1
FUZZ_ROOT=.cache/cargo-fuzz
SECONDS_EACH=${2:-${FUZZ_SECONDS:-60}}
RUNS=${FUZZ_RUNS:-}
SANITIZER=${FUZZ_SANITIZER:-address}
OUT=${FUZZ_OUT:-out/fuzz}
ALL_TARGETS=(calib_table manifest group_spec trt_reports onnx_model wav_fbank upload_decode)

max_len() {
  case $1 in
    onnx_model | upload_decode) echo 1048576 ;;
    wav_fbank) echo 262144 ;;
    *) echo 65536 ;;
  esac
}

if [ -z "${1:-}" ] || [ "$1" = all ]; then
  targets=("${ALL_TARGETS[@]}")
else
  IFS=, read -r -a targets <<<"$1"
  for t in "${targets[@]}"; do
    case " ${ALL_TARGETS[*]} " in
      *" $t "*) ;;
      *) echo "error: unknown fuzz target '$t' (targets: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
    esac
  done
fi
case $SECONDS_EACH in
  '' | *[!0-9]*) echo "error: SECONDS must be a whole number, got '$SECONDS_EACH'" >&2; exit 2 ;;
esac
case $SANITIZER in
  address | none) ;;
  *) echo "error: FUZZ_SANITIZER must be 'address' or 'none', got '$SANITIZER'" >&2; exit 2 ;;
esac

# --- cargo-fuzz, pinned, in a project-local folder ------------------------------------------
export PATH="$PWD/$FUZZ_ROOT/bin:$PATH"
have=$(cargo-fuzz --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_ROOT"
  "$CARGO" install --locked --root "$FUZZ_ROOT" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
# libFuzzer's instrumentation (-Zsanitizer, sancov passes) needs unstable flags: the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1

# --- seeds and build ---------------------------------------------------------------------------
if [ "${FUZZ_RESEED:-0}" = 1 ] || [ ! -e fuzz/seeds/.complete ]; then
  echo "== building seed corpora (fuzz/seed.sh)"
  bash fuzz/seed.sh fuzz/seeds
fi
# The targets are built once, then the binaries run directly: a library edit during a long
# campaign does not rebuild between targets. FUZZ_NO_BUILD=1 runs what was built last.
BIN_DIR=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  echo "== building fuzz targets (sanitizer: $SANITIZER)"
  cargo fuzz build -s "$SANITIZER"
  echo "$SANITIZER" >"$BIN_DIR/.voxq-sanitizer"
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  # Only what goes into the binaries counts (docs and tests do not).
  if [ -n "$(git status --porcelain -- calibration exporter engines runtime fuzz/fuzz_targets \
    fuzz/Cargo.toml fuzz/Cargo.lock Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    commit="$commit+dirty"
  fi
  echo "$commit" >"$BIN_DIR/.voxq-commit"
fi
built=$(cat "$BIN_DIR/.voxq-sanitizer" 2>/dev/null || echo none)
if [ "$built" != "$SANITIZER" ]; then
  echo "error: the fuzz targets in $BIN_DIR were built with sanitizer '$built', not '$SANITIZER' (run without FUZZ_NO_BUILD=1)" >&2
  exit 2
fi
# As cargo fuzz run does: the bundled SQLite is compiled into more than one crate's object set.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

mkdir -p "$OUT/logs"
failed=0
results=()
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  artifacts=fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  before=$(ls "$artifacts" | sort)
  log=$OUT/logs/$t.log
  args=(-max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10
    -rss_limit_mb=2048 -print_final_stats=1)
  # symphonia 0.5 allocates metadata buffers (Vorbis comments, FLAC pictures, ID3v2 frames)
  # from u32 length fields before reading them (upstream issue pdeljanov/Symphonia#508): up to
  # 4 GiB of untouched, lazily mapped memory that is freed when the read hits the end of the
  # data. Single allocations up to that size are let through for upload_decode; real memory
  # stays capped by -rss_limit_mb. See fuzz/README.md.
  [ "$t" = upload_decode ] && args+=(-malloc_limit_mb=4097)
  [ -n "$RUNS" ] && args+=(-runs="$RUNS")
  # shellcheck disable=SC2206
  [ -n "${FUZZ_EXTRA:-}" ] && args+=($FUZZ_EXTRA)
  echo "== $t: up to ${SECONDS_EACH} s${RUNS:+ or $RUNS executions} (log: $log)"
  start=$(date +%s.%N)
  set +e
  "$BIN_DIR/$t" -artifact_prefix="$artifacts/" "${args[@]}" "$corpus" "fuzz/seeds/$t" >"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  new=$(comm -13 <(echo "$before") <(ls "$artifacts" | sort) | tr '\n' ' ')
  results+=("$t|$rc|$start|$end|$new")
  if [ "$rc" != 0 ] || [ -n "$new" ]; then
    failed=1
    echo "   FAILED (exit $rc): ${new:-no artifact}; last lines of $log:"
    grep -v -e '^#[0-9]' -e 'NEW_FUNC' "$log" | cut -c1-240 | tail -n 40 | sed 's/^/   | /'
  fi
done

# --- summary -----------------------------------------------------------------------------------
# The commit the targets were built from (recorded at build time; "+dirty" when the tree had
# uncommitted changes then).
commit=$(cat "$BIN_DIR/.voxq-commit" 2>/dev/null || echo unknown)
python3 - "$OUT" "$SANITIZER" "$SECONDS_EACH" "${RUNS:-0}" "$commit" "${results[@]}" <<'PY'
import json, os, re, sys, time

out, sanitizer, seconds, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
commit = sys.argv[5]
path = os.path.join(out, "summary.json")
try:
    summary = json.load(open(path))
except (OSError, ValueError):
    summary = {"targets": {}}
for item in sys.argv[6:]:
    t, rc, start, end, new = item.split("|", 4)
    log = open(os.path.join(out, "logs", t + ".log"), errors="replace").read()
    stat = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.M))
    done = re.findall(r"^Done (\d+) runs in (\d+) second", log, re.M)
    execs = int(stat.get("number_of_executed_units", done[-1][0] if done else 0))
    # The last status line tells the executions of a run that ended without final stats.
    if not stat:
        status = re.findall(r"^#(\d+)\s", log, re.M)
        execs = max([execs] + [int(s) for s in status])
    wall = float(end) - float(start)
    arts = new.split()
    kinds = {k: sum(a.startswith(k + "-") for a in arts) for k in ("crash", "timeout", "oom", "leak", "slow-unit")}
    corpus = len(os.listdir(os.path.join("fuzz", "corpus", t)))
    ok = rc == "0" and not any(kinds[k] for k in ("crash", "timeout", "oom", "leak"))
    summary["targets"][t] = {
        "result": "ok" if ok else "FAILED",
        "exit_code": int(rc),
        "executions": execs,
        "seconds": round(wall, 1),
        "exec_per_s": round(execs / wall) if wall > 0 else 0,
        "seconds_limit": seconds,
        "runs_limit": runs or None,
        "sanitizer": sanitizer,
        "commit": commit,
        "corpus_files": corpus,
        "new_units": int(stat.get("new_units_added", 0)),
        "peak_rss_mb": int(stat.get("peak_rss_mb", 0)),
        "crashes": kinds["crash"], "timeouts": kinds["timeout"], "ooms": kinds["oom"],
        "leaks": kinds["leak"], "slow_units": kinds["slow-unit"],
        "artifacts": [os.path.join("fuzz", "artifacts", t, a) for a in arts],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(end))),
    }
os.makedirs(out, exist_ok=True)
with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
    f.write("\n")
os.replace(path + ".tmp", path)

rows = ["| target | result | executions | time (s) | exec/s | crashes | timeouts | OOMs | corpus | peak RSS (MB) | sanitizer | commit | finished (UTC) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
for t, r in sorted(summary["targets"].items()):
    rows.append(f"| `{t}` | {r['result']} | {r['executions']:,} | {r['seconds']:.0f} | {r['exec_per_s']:,} | "
                f"{r['crashes']} | {r['timeouts']} | {r['ooms']} | {r['corpus_files']} | {r['peak_rss_mb']} | "
                f"{r['sanitizer']} | {r.get('commit', 'unknown')} | {r['finished']} |")
md = "# Fuzzing summary\n\nWritten by `tools/fuzz.sh` (`make fuzz`); each row is the latest run of that target.\n\n"
md += "\n".join(rows) + "\n"
with open(os.path.join(out, "summary.md.tmp"), "w") as f:
    f.write(md)
os.replace(os.path.join(out, "summary.md.tmp"), os.path.join(out, "summary.md"))
print(md)
PY

if [ "$failed" != 0 ]; then
  echo "error: a fuzz target failed; failing inputs are in fuzz/artifacts/<target>/ (reproduce: $BIN_DIR/TARGET fuzz/artifacts/TARGET/FILE, or see fuzz/README.md)" >&2
  exit 1
fi
