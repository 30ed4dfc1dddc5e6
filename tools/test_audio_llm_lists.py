#!/usr/bin/env python3
"""Checks, in seconds, that tools/audio_llm_data.py still makes the real-speech part of the
committed audio-LLM lists (fixtures/audio-llm/lists/), without flite or writing any audio:

    .cache/whisper-venv/bin/python tools/test_audio_llm_lists.py

Needs the set-up's speech and transcripts (tools/setup_speech.sh, tools/setup_whisper.sh,
tools/setup_distil_data.sh); exits 1 naming what differs. It checks
  - heldout_real.tsv byte for byte (the held-out half of the Asterisk prompts + LibriVox),
  - the real rows of train.tsv + val.tsv (the training half less the prompts whose text equals
    a held-out one, the AN4 cards, and the augmented copies' file names) as a set,
  - the augmented copies' rows of synth_recipe.tsv (source prompt and text).
The whole lists, synthetic speech and questions included, are compared by
`tools/audio_llm_data.py --debs DIR --check` (a few minutes: flite runs again).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audio_llm_data as data  # noqa: E402

REAL_COPIES = 3  # tools/audio_llm_data.py --real-copies default, as the lists were made
AUG_DIR = ".cache/audio-llm-train/audio/real"


def rows(name: str) -> list:
    return [tuple(ln.split("\t")) for ln in (data.LISTS / name).read_text().splitlines()]


def aug_path(p: str, c: int) -> str:
    return f"{AUG_DIR}/{hashlib.sha1(p.encode()).hexdigest()[:12]}-{c}.wav"


def check() -> list:
    """The differences found, as lines (empty: the lists agree)."""
    real = data.real_speech(data.SEED)
    bad = []
    held = data.tsv_text([(p, t) for p, t, _ in real["heldout"]])
    committed = (data.LISTS / "heldout_real.tsv").read_text()
    if held != committed:
        made, want = held.splitlines(), committed.splitlines()
        bad.append(f"heldout_real.tsv: made {len(made)} rows, committed {len(want)}; only made: "
                   f"{sorted(set(made) - set(want))[:3]}; only committed: "
                   f"{sorted(set(want) - set(made))[:3]}")
    want = set()
    for p, t, _ in real["train_real"]:
        want.add((p, t))
        want.update((aug_path(p, c), t) for c in range(1, REAL_COPIES))
    have = {r for r in rows("train.tsv") + rows("val.tsv") if "/synth/" not in r[0]}
    if want != have:
        bad.append(f"train.tsv + val.tsv real rows: {len(have)} committed, {len(want)} made; "
                   f"only made: {sorted(want - have)[:3]}; only committed: "
                   f"{sorted(have - want)[:3]}")
    want_aug = {(aug_path(p, c), "real:" + p, t) for p, t, _ in real["train_real"]
                for c in range(1, REAL_COPIES)}
    have_aug = {(r[0], r[1], r[6]) for r in rows("synth_recipe.tsv") if r[1].startswith("real:")}
    if want_aug != have_aug:
        bad.append(f"synth_recipe.tsv augmented real rows: {len(have_aug)} committed, "
                   f"{len(want_aug)} made")
    return bad


def main() -> int:
    bad = check()
    for b in bad:
        print(f"DIFFERS: {b}")
    if bad:
        return 1
    print("the real-speech rows of fixtures/audio-llm/lists/ are what tools/audio_llm_data.py makes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
