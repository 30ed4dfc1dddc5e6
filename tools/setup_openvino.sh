#!/usr/bin/env bash
# Installs OpenVINO's C library for voxq: the CPU runtime taken out of the openvino PyPI wheel
# (2026.4.1) into .cache/openvino/ (voxq looks there when OPENVINO_DYLIB_PATH is unset): the C API
# (libopenvino_c.so), the core, the CPU plugin, the ONNX front end and TBB. The GPU/NPU plugins
# and the other front ends stay out (voxq runs ONNX models on the CPU).
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

VERSION=2026.4.1
WHEEL=openvino-2026.4.1-22982-cp311-cp311-manylinux_2_28_x86_64.whl
SHA=2d22b1da03f7caf74df30e9f6417d0ab2f637e4a38e08e1dcd294d2c37407aaf
OUT="$CACHE/openvino"
LIBS="libopenvino.so.2641 libopenvino_c.so.2641 libopenvino_intel_cpu_plugin.so
libopenvino_onnx_frontend.so.2641 libopenvino_ir_frontend.so.2641 libopenvino_auto_plugin.so
libopenvino_auto_batch_plugin.so libopenvino_hetero_plugin.so libtbb.so.12 libtbbbind_2_5.so.3
libtbbmalloc.so.2 libtbbmalloc_proxy.so.2 libhwloc.so.15 cache.json"

if [ -f "$OUT/libopenvino_c.so" ] && [ -f "$OUT/.from-$SHA" ]; then
  exit 0
fi
fetch_wheel openvino "$VERSION" "$WHEEL" "$SHA"
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.openvino.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 - "$DL/$WHEEL" "$tmp" $LIBS <<'PY'
import os, sys, zipfile
whl, out, *libs = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for lib in libs:
        data = z.read(f"openvino/libs/{lib}")
        path = os.path.join(out, lib)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
PY
chmod 755 "$tmp"
ln -sf libopenvino_c.so.2641 "$tmp/libopenvino_c.so"
ln -sf libopenvino.so.2641 "$tmp/libopenvino.so"
touch "$tmp/.from-$SHA"
rm -rf "$OUT"
mv "$tmp" "$OUT"
trap - EXIT
echo "installed OpenVINO $VERSION at $OUT" >&2
