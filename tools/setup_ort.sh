#!/usr/bin/env bash
# Installs ONNX Runtime's shared library for voxq: libonnxruntime.so 1.31.1 taken out of the
# onnxruntime PyPI wheel into .cache/onnxruntime/ (voxq looks there when ORT_DYLIB_PATH is unset).
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

WHEEL=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
SHA=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
LIB=libonnxruntime.so.1.31.1
OUT="$CACHE/onnxruntime"

if [ -f "$OUT/$LIB" ] && [ -f "$OUT/.from-$SHA" ]; then
  exit 0
fi
fetch_wheel onnxruntime 1.31.1 "$WHEEL" "$SHA"
mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.tmp.XXXXXX")
python3 - "$DL/$WHEEL" "$tmp" "$LIB" <<'PY'
import sys, zipfile
whl, out, lib = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    data = z.read(f"onnxruntime/capi/{lib}")
open(f"{out}/{lib}", "wb").write(data)
PY
mv "$tmp/$LIB" "$OUT/$LIB"
rmdir "$tmp"
ln -sf "$LIB" "$OUT/libonnxruntime.so"
touch "$OUT/.from-$SHA"
echo "installed ONNX Runtime 1.31.1 at $OUT/$LIB" >&2
