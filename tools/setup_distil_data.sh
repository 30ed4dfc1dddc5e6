#!/usr/bin/env bash
# Builds the extra speech that tools/distil_ecapa.py trains on, at .cache/distil/audio: flite
# voices speaking generated sentences, klettres-data letters/syllables, pocketsphinx-testdata
# clips (Debian bookworm, pinned by sha256; see tools/prepare_distil_audio.py). Needs the
# speech corpus (tools/setup_speech.sh, for its PyAV venv and the prompt names used as
# vocabulary). A stamp makes a second run a no-op. Not part of `make test`: only the training
# script needs it.
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

# package version sha256 arch
DEBS="
flite 2.2-5 f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9 amd64
libflite1 2.2-5 bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061 amd64
klettres-data 4:22.12.3-1 1186d257a19e84230856baea0b0b1ded8be9195080fcdb2588970b5cd937f5a8 all
pocketsphinx-testdata 0.8+5prealpha+1-15 eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0 all
"
TOOLS="$VOXQ_ROOT/tools"
OUT="$CACHE/distil/audio"
KEY=$( { echo "$DEBS"; cat "$TOOLS/prepare_distil_audio.py"; } | sha256sum | cut -c1-16)
[ -f "$OUT/.stamp-$KEY" ] && exit 0

"$TOOLS/setup_speech.sh"
mkdir -p "$CACHE/distil"
work=$(mktemp -d "$CACHE/distil/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
extract_debs "$DEBS" "$work/debs"
"$CACHE/pyenv/bin/python" "$TOOLS/prepare_distil_audio.py" --debs "$work/debs" \
  --speech "$CACHE/speech" --out "$work/out"
touch "$work/out/.stamp-$KEY"
rm -rf "$OUT"
mv "$work/out" "$OUT"
