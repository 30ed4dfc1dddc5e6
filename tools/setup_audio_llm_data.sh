#!/usr/bin/env bash
# Builds the audio-LLM projector's training data (issue 20) at .cache/audio-llm-train/audio and
# rewrites the committed lists in fixtures/audio-llm/lists/ (tools/audio_llm_data.py; the same
# seed gives the same lists). Debian bookworm packages, pinned by sha256: flite + libflite1
# (voices), pocketsphinx-testdata (LibriVox and AN4 clips, already decoded by
# tools/setup_distil_data.sh), fortunes-min + fortunes (sentences flite reads). Needs
# tools/setup_speech.sh, tools/setup_whisper.sh (transcripts, venv) and tools/setup_distil_data.sh
# (pocketsphinx clips). A stamp makes a second run a no-op. Not part of `make test`.
# Check that the committed lists are still what the script makes: tools/test_audio_llm_lists.py
# (real-speech rows, seconds) or audio_llm_data.py --debs DIR --check (every list, minutes).
#
# The whole recipe (see tools/train_projector.py for each step):
#   tools/setup_whisper.sh && tools/setup_llm.sh && tools/setup_distil_data.sh
#   .cache/whisper-venv/bin/python tools/whisper_ct2.py convert
#   .cache/whisper-venv/bin/python tools/whisper_ct2.py export
#   .cache/whisper-venv/bin/python tools/llm_export.py convert
#   .cache/whisper-venv/bin/python tools/llm_export.py export
#   tools/setup_audio_llm_data.sh
#   nice -n 10 .cache/whisper-venv/bin/python tools/train_projector.py precompute
#   nice -n 10 .cache/whisper-venv/bin/python tools/train_projector.py train
#   nice -n 10 .cache/whisper-venv/bin/python tools/train_projector.py export
set -euo pipefail
. "$(dirname "$0")/fetch.sh"

# package version sha256 arch
DEBS="
flite 2.2-5 f4ce03470bf9974c2cb9cacd981e6be29339ef4c97cf994dd6fa3f90e6544db9 amd64
libflite1 2.2-5 bfa8c591f1b47730b30b372ec38e02918a1c9795eada67684e1746390ad2f061 amd64
pocketsphinx-testdata 0.8+5prealpha+1-15 eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0 all
fortunes-min 1:1.99.1-7.3 9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07 all
fortunes 1:1.99.1-7.3 41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5 all
"
TOOLS="$VOXQ_ROOT/tools"
OUT="$CACHE/audio-llm-train"
PY="$CACHE/whisper-venv/bin/python"
KEY=$( { echo "$DEBS"; cat "$TOOLS/audio_llm_data.py"; } | sha256sum | cut -c1-16)
[ -f "$OUT/audio/.stamp-$KEY" ] && exit 0

for need in "$CACHE/speech/allison/en/activated.wav" "$CACHE/whisper/transcripts/librivox.transcription" \
            "$CACHE/distil/audio/pocketsphinx/cards-001.wav" "$PY"; do
  [ -e "$need" ] || { echo "error: $need is missing (run setup_speech.sh, setup_whisper.sh, setup_distil_data.sh)" >&2; exit 1; }
done
mkdir -p "$OUT"
work=$(mktemp -d "$OUT/.debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
extract_debs "$DEBS" "$work/debs"
rm -rf "$OUT/audio"
(cd "$VOXQ_ROOT" && "$PY" "$TOOLS/audio_llm_data.py" --debs "$work/debs" --out .cache/audio-llm-train)
touch "$OUT/audio/.stamp-$KEY"
