#!/usr/bin/env bash
# Builds the real-speech corpus at .cache/speech/<speaker>/<lang>/<name>.wav (16-bit PCM mono,
# 16 kHz) from Debian bookworm's asterisk prompt packages: the G.722 (wideband, 16 kHz) core
# sounds of Allison (en, es), June (fr), Carlo (it) and the Russian IVR voice, and the 8 kHz
# prompts of Menardi (it, PCM WAV), Armelle (fr, GSM) and July (es-CO, GSM), upsampled 2x.
# Decoding happens once, here, with PyAV in a set-up venv (.cache/pyenv); a stamp makes a second
# run a no-op. Needs python3 (>= 3.11 for the pinned av wheel) and apt lists (apt-get update).
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

AV_WHEEL=av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl
AV_SHA=8a032e8d8ebc73dec079364b9b4a6837638a2d106e8472314e685ffbf163e700

# package version sha256 (all from Debian bookworm main, Architecture: all)
DEBS="
asterisk-core-sounds-en-g722 1.6.1-1 38c5261820b406dcb0ecb37675720da2b0864850690690352ca52707eb623806
asterisk-core-sounds-es-g722 1.6.1-1 e4e3b4281057d3b81b779298fd6be705f57411513955c518eed1bcaabbd615b8
asterisk-core-sounds-fr-g722 1.6.1-1 7add61d5e42279ecff1bbdf842a5a946ac3644fac9a0fe44384731aa7270c8e0
asterisk-core-sounds-it-g722 1.6.1-1 46b4cf7afc508a5fcfc051b7ea233251c0d195dd4ef83cc4b7facb4c6429b016
asterisk-core-sounds-ru-g722 1.6.1-1 673b4238a6b8269960f055d868c6a11083f7a0d00979167cb01554046b48ed9b
asterisk-prompt-it-menardi-wav 1:1.4.22+mm20110907-3.1 3094530d98f8758ac275572d59624c41f60969fef883f34f4886d144f3dfeb21
asterisk-prompt-fr-armelle 20070613-2.2 162570b1a9b3512a98f06b89f60c7c17cf1b9b52297315adca9a4e5be728bea3
asterisk-prompt-es-co 0.20070403-2.1 6702696e045514699e87dc8fb70f370717e5df91f821f7bec8dd0df1be008e83
"

TOOLS="$VOXQ_ROOT/tools"
OUT="$CACHE/speech"
PYENV="$CACHE/pyenv"
KEY=$( { echo "$AV_SHA"; echo "$DEBS"; cat "$TOOLS/prepare_speech.py"; } | sha256sum | cut -c1-16)

if [ -f "$OUT/.stamp-$KEY" ]; then
  exit 0
fi

# --- set-up venv with PyAV, installed offline from the pinned wheel --------------------------
fetch_wheel av 18.1.0 "$AV_WHEEL" "$AV_SHA"
if [ ! -f "$PYENV/.av-$AV_SHA" ]; then
  rm -rf "$PYENV"
  if python3 -m venv "$PYENV" >/dev/null 2>&1; then
    "$PYENV/bin/python" -m pip install -q --no-index --no-deps "$DL/$AV_WHEEL"
  else
    # no ensurepip (Debian without python3-venv): a bare venv, and the wheel unpacked into it
    rm -rf "$PYENV"
    python3 -m venv --without-pip "$PYENV"
    site=$("$PYENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PYENV/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$DL/$AV_WHEEL" "$site"
  fi
  "$PYENV/bin/python" -c 'import av' || { echo "error: PyAV does not import in $PYENV (python3 >= 3.11 needed)" >&2; exit 1; }
  touch "$PYENV/.av-$AV_SHA"
fi

# --- packages, extracted into a scratch folder --------------------------------------------
work=$(mktemp -d "$CACHE/.speech-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out"
while read -r name version sha; do
  [ -n "$name" ] || continue
  deb=$(fetch_deb "$name" "$version" "$sha")
  dpkg -x "$deb" "$work/src/$name"
done <<< "$DEBS"

echo "decoding prompts into $OUT ..." >&2
"$PYENV/bin/python" "$TOOLS/prepare_speech.py" --src "$work/src" --out "$work/out"
touch "$work/out/.stamp-$KEY"

# swap the finished corpus in (a failed run leaves the previous one untouched)
if [ -e "$OUT" ]; then
  mv "$OUT" "$work/old"
fi
mv "$work/out" "$OUT"
n=$(($(wc -l < "$OUT/MANIFEST.tsv") - 1))
echo "speech corpus: $n files (16 kHz PCM16 mono) at $OUT" >&2
