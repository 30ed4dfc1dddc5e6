#!/usr/bin/env bash
# Sets up the CPU peers that tools/bench_asr.py measures voxq against (issue 21), each in its
# own venv, every package pinned by version and sha256 (pip --require-hashes), from PyPI only:
#   .cache/peers-venv-fw     faster-whisper 1.2.1 (CTranslate2)   tools/requirements-peers-fw.txt
#   .cache/peers-venv-wcpp   pywhispercpp 1.5.1 (whisper.cpp)     tools/requirements-peers-wcpp.txt
#   .cache/peers-venv-llama  llama-cpp-python 0.3.36 (llama.cpp), built from its sdist for this
#                            CPU (no wheel on PyPI; CPU only; nice -n 15; 10-30 min on 2 cores)
# and the model files they read, written from the weights voxq itself runs (no model hub is
# reachable, nor needed):
#   .cache/peers/ggml/ggml-tiny.en-{f16,q8_0}.bin  tools/whisper_ggml.py from .cache/whisper/tiny.en/hf
#   .cache/peers/gguf/smollm2-135m-{f32,f16,q8_0}.gguf  llama.cpp's convert_hf_to_gguf.py (vendored
#       in the llama-cpp-python sdist, run as is) from .cache/llm/smollm2/hf
# Needs `make whisper` (Whisper venv, tiny.en ct2 + hf folders) and `make audio-llm` (SmolLM2 hf
# folder) first. Wheels are cached in .cache/wheels-peers-*; a second run does no network work.
# Never needed by `make test`.
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

T="$VOXQ_ROOT/tools"
PEERS="$CACHE/peers"
WPY="$CACHE/whisper-venv/bin/python"
LLAMA_SDIST=llama_cpp_python-0.3.36.tar.gz
LLAMA_CMAKE="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF"

python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "error: python3 3.11 needed (the peers' wheels are pinned by hash for CPython 3.11)" >&2; exit 1; }
for need in "$CACHE/whisper/tiny.en/ct2/model.bin" "$CACHE/whisper/tiny.en/hf/model.safetensors" "$WPY"; do
  [ -e "$need" ] || { echo "error: $need missing: run 'make whisper' first" >&2; exit 1; }
done
[ -f "$CACHE/llm/smollm2/hf/model.safetensors" ] \
  || { echo "error: .cache/llm/smollm2/hf missing: run 'make audio-llm' first" >&2; exit 1; }

# wheels NAME REQ PYTHON [PIP ARGS...]: the pinned files of REQ in .cache/wheels-peers-NAME
# (once per REQ), downloaded by PYTHON's pip
wheels() {
  local name=$1 req=$2 py=$3 key dir
  shift 3
  key=$(sha256sum "$req" | cut -c1-16)
  dir="$CACHE/wheels-peers-$name"
  if [ ! -f "$dir/.req-$key" ]; then
    echo "fetch: $name peer packages (PyPI)" >&2
    mkdir -p "$dir"
    "$py" -m pip download -q --require-hashes --no-deps "$@" -d "$dir" -r "$req"
    touch "$dir/.req-$key"
  fi
}

# venv NAME REQ: a venv at .cache/peers-venv-NAME with REQ installed offline (wheels only)
venv() {
  local name=$1 req=$2 key v="$CACHE/peers-venv-$1"
  key=$(sha256sum "$req" | cut -c1-16)
  [ -f "$v/.req-$key" ] && return 0
  wheels "$name" "$req" python3 --only-binary=:all:
  rm -rf "$v"
  python3 -m venv "$v"
  "$v/bin/python" -m pip install -q --no-index --find-links "$CACHE/wheels-peers-$name" \
    --require-hashes -r "$req"
  touch "$v/.req-$key"
  echo "peer venv ready at $v" >&2
}

venv fw "$T/requirements-peers-fw.txt"
"$CACHE/peers-venv-fw/bin/python" -c 'import faster_whisper, ctranslate2'
venv wcpp "$T/requirements-peers-wcpp.txt"
"$CACHE/peers-venv-wcpp/bin/python" -c 'import pywhispercpp.model'

# --- llama.cpp: build tools first, then the sdist built without isolation -----------------------
LREQ="$T/requirements-peers-llama.txt"
lkey=$(echo "$(sha256sum "$LREQ") $LLAMA_CMAKE" | sha256sum | cut -c1-16)
LV="$CACHE/peers-venv-llama"
if [ ! -f "$LV/.req-$lkey" ]; then
  tmp=$(mktemp -d "$CACHE/.peers-req.XXXXXX")
  grep -v '^llama-cpp-python==' "$LREQ" > "$tmp/tools.txt"
  grep '^llama-cpp-python==' "$LREQ" > "$tmp/sdist.txt"
  wheels llama "$tmp/tools.txt" python3 --only-binary=:all:
  rm -rf "$LV"
  python3 -m venv "$LV"
  "$LV/bin/python" -m pip install -q --no-index --find-links "$CACHE/wheels-peers-llama" \
    --require-hashes -r "$tmp/tools.txt"
  # (the sdist's metadata comes from the pinned scikit-build-core just installed: no isolation)
  wheels llama-sdist "$tmp/sdist.txt" "$LV/bin/python" --no-binary=:all: --no-build-isolation
  echo "build: llama-cpp-python from source (CPU; nice -n 15; 10-30 min on 2 cores)" >&2
  CMAKE_ARGS="$LLAMA_CMAKE" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" nice -n 15 \
    "$LV/bin/python" -m pip install -q --no-index --no-build-isolation --no-deps \
    --require-hashes -r "$tmp/sdist.txt" --find-links "$CACHE/wheels-peers-llama-sdist"
  rm -rf "$tmp"
  "$LV/bin/python" -c 'import llama_cpp'
  touch "$LV/.req-$lkey"
  echo "peer venv ready at $LV" >&2
fi

# --- whisper.cpp model files from the transformers weights ---------------------------------------
gkey=$(cat "$T/whisper_ggml.py" "$CACHE/whisper/tiny.en/hf/config.json" | sha256sum | cut -c1-16)
if [ ! -f "$PEERS/ggml/.stamp-$gkey" ]; then
  rm -rf "$PEERS/ggml"
  for t in f16 q8_0; do
    nice -n 10 "$WPY" "$T/whisper_ggml.py" --hf "$CACHE/whisper/tiny.en/hf" \
      --out "$PEERS/ggml/ggml-tiny.en-$t.bin" --type "$t"
  done
  touch "$PEERS/ggml/.stamp-$gkey"
fi

# --- GGUF files of SmolLM2 with llama.cpp's own converter ------------------------------------------
ukey=$(echo "$lkey $(sha256sum "$T/requirements-peers-convert.txt")" | sha256sum | cut -c1-16)
if [ ! -f "$PEERS/gguf/.stamp-$ukey" ]; then
  sdist=$(ls "$CACHE/wheels-peers-llama-sdist/$LLAMA_SDIST")
  rm -rf "$PEERS/src" "$PEERS/convert-pylib" "$PEERS/gguf"
  mkdir -p "$PEERS/src" "$PEERS/gguf"
  base=${LLAMA_SDIST%.tar.gz}/vendor/llama.cpp
  tar -xzf "$sdist" -C "$PEERS/src" --strip-components=3 \
    "$base/convert_hf_to_gguf.py" "$base/conversion" "$base/gguf-py"
  python3 -m pip install -q --no-deps --require-hashes --only-binary=:all: \
    --target "$PEERS/convert-pylib" -r "$T/requirements-peers-convert.txt"
  for t in f32 f16 q8_0; do
    PYTHONPATH="$PEERS/convert-pylib" nice -n 10 "$WPY" "$PEERS/src/convert_hf_to_gguf.py" \
      "$CACHE/llm/smollm2/hf" --outtype "$t" --outfile "$PEERS/gguf/smollm2-135m-$t.gguf" 2>&1 \
      | grep -E 'successfully|Error|error' >&2
  done
  touch "$PEERS/gguf/.stamp-$ukey"
fi
echo "peers ready: run python3 tools/bench_asr.py (or make bench-asr)" >&2
