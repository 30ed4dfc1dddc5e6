#!/usr/bin/env bash
# Creates the Python reference environment (.cache/pyref: numpy, onnxruntime, kaldi-native-fbank,
# pinned in tools/requirements-reference.txt) used by tests that compare voxq with a Python
# pipeline. Wheels are downloaded once into .cache/wheels-pyref; later runs install offline.
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

REQ="$VOXQ_ROOT/tools/requirements-reference.txt"
HASHED="$VOXQ_ROOT/tools/requirements-reference.cp311.txt"
HASH_ARGS=()
if python3 -c 'import sys, platform; sys.exit(not (sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64"))'; then
  REQ="$HASHED"; HASH_ARGS=(--require-hashes)
else
  echo "note: Python is not CPython 3.11 on x86-64; reference wheels are pinned by version only" >&2
fi
VENV="$CACHE/pyref"
WHEELS="$CACHE/wheels-pyref"
stamp="$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)"
[ -f "$stamp" ] && exit 0

if [ ! -f "$WHEELS/.req-$(sha256sum "$REQ" | cut -c1-16)" ]; then
  echo "fetch: Python reference wheels (PyPI)" >&2
  mkdir -p "$WHEELS"
  python3 -m pip download -q --only-binary=:all: "${HASH_ARGS[@]}" -d "$WHEELS" -r "$REQ"
  touch "$WHEELS/.req-$(sha256sum "$REQ" | cut -c1-16)"
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --no-index "${HASH_ARGS[@]}" --find-links "$WHEELS" -r "$REQ"
touch "$stamp"
echo "Python reference environment ready at $VENV" >&2
