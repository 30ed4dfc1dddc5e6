#!/usr/bin/env bash
# Unpacks the ONNX single-operator backend test cases (onnx/backend/test/data/node/) shipped in
# the onnx==1.22.0 wheel, the last release that carries them, into .cache/onnx-node-tests/.
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

WHEEL=onnx-1.22.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
SHA=1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5
OUT="$CACHE/onnx-node-tests"
[ -f "$OUT/.from-$SHA" ] && exit 0
fetch_wheel onnx 1.22.0 "$WHEEL" "$SHA"
rm -rf "$OUT"; tmp=$(mktemp -d "$CACHE/.onnx-tests.XXXXXX")
python3 - "$DL/$WHEEL" "$tmp" <<'PY'
import sys, zipfile
whl, out = sys.argv[1:]
prefix = "onnx/backend/test/data/node/"
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(prefix) and not n.endswith("/"):
            z.extract(n, out)
PY
mv "$tmp/onnx/backend/test/data/node" "$OUT"; rm -rf "$tmp"
touch "$OUT/.from-$SHA"
echo "unpacked $(ls "$OUT" | wc -l) ONNX node test cases into $OUT" >&2
