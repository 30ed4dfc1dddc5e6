#!/usr/bin/env python3
"""Training and held-out data for the audio-LLM projector (issue 20), from registry data only.

    .cache/whisper-venv/bin/python tools/audio_llm_data.py --debs DIR [--seed 20261121]
        [--n-synth 1500] [--real-copies 3] [--out .cache/audio-llm-train]
    .cache/whisper-venv/bin/python tools/audio_llm_data.py --debs DIR --check

`--check` makes every list again in memory (flite still runs, no audio is written, a few
minutes), compares them byte for byte with the committed fixtures/audio-llm/lists/ and exits 1
naming each file that differs (measured: about 6 minutes on 2 shared cores, all 7 lists the
same). tools/test_audio_llm_lists.py checks the real-speech rows (heldout_real.tsv byte for
byte, the real rows of train/val, the augmented copies) in about a second, without flite.

Normally run by tools/setup_audio_llm_data.sh, which fetches and unpacks the Debian packages
(sha256-pinned: flite, libflite1, pocketsphinx-testdata, fortunes-min, fortunes) into DIR and
needs the speech corpus (tools/setup_speech.sh), the transcripts (tools/setup_whisper.sh) and
the pocketsphinx clips (tools/setup_distil_data.sh). Deterministic for a given seed.

Sources
  real      the English Asterisk prompts (Allison, .cache/speech/allison/en, 16 kHz from the G.722
            package) with the words of asterisk-core-sounds-en's text file, the non-speech
            prompts whose whole text is one `[...]` span (`[this is a simple beep tone]`) and the
            3 prompts over 30 s left out; the LibriVox and AN4 "cards" clips of
            pocketsphinx-testdata (.cache/distil/audio/pocketsphinx). This is the rule the
            committed lists were made with; it is NOT tools/whisper_wer.py's later, wider
            `non_speech` (which also drops `<beep ascending>` and `(1 second of silence)`), so
            the two beep prompts confbridge-join (held out) and confbridge-leave (training)
            stay in, with their bracketed text as the reference (see `asterisk_references`).
  synthetic flite 2.2 voices kal (8 kHz, upsampled), kal16, awb, rms, slt at a random
            duration_stretch (0.8-1.3) and mean F0 (per-voice range) reading sentences from:
            fortune databases of `fortunes-min` and `fortunes` 1:1.99.1-7.3 (a list of the milder
            ones, see FORTUNE_DBS), flite's example texts (alice, intro.txt), the transcripts of
            the TRAINING half of the Asterisk prompts, and those transcripts with their number
            replaced by a random one (so that "what number is said?" has varied answers).

Splits
  held-out real speech (never trained on): half of the <= 30 s English Asterisk prompts chosen
            by a fixed-seed shuffle, and all 5 LibriVox clips.
  train / val: every other utterance, split by utterance (all augmented copies of one utterance
            fall on the same side; 5% val). A real training prompt or a synthetic sentence whose
            normalised text (tools/whisper_wer.py) equals a held-out prompt's is dropped.

Augmentation (the ideas of the ECAPA distillation, in numpy): speed 0.9/1.1 (resampling), the
telephone band (300-3400 Hz), white or brown noise at 5-30 dB SNR, gain -10..+6 dB. Real
training prompts: one clean copy plus `--real-copies - 1` augmented ones; synthetic: half clean.

Questions (the `qa` task; answers exact and short, derivable from the transcript): the first
word, the last word, the number said (only when there is exactly one), whether a given word is
said (yes/no, half with a distractor), whether it is a question (yes/no).

Outputs
  fixtures/audio-llm/lists/   committed: heldout_real.tsv, heldout_real_qa.tsv, train.tsv,
                              train_qa.tsv, val.tsv, val_qa.tsv, synth_recipe.tsv, README.md
                              (path relative to the repository root <TAB> text; QA: path <TAB>
                              question <TAB> answer)
  OUT/audio/                  the generated 16 kHz PCM16 WAVs (git-ignored)
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from whisper_wer import TRANSCRIPTS, normalise  # noqa: E402

RATE = 16000
SEED = 20261121
MAX_SECONDS = 30.0
SPEECH = Path(".cache/speech/allison/en")
PSPHINX = Path(".cache/distil/audio/pocketsphinx")
LISTS = ROOT / "fixtures" / "audio-llm" / "lists"
VOICES = {"kal": (85, 130), "kal16": (85, 130), "awb": (85, 135), "rms": (80, 125),
          "slt": (140, 210)}
# milder fortune databases with plain prose (no code, ASCII art, or the crude collections)
FORTUNE_DBS = ["fortunes", "cookie", "platitudes", "wisdom", "literature", "education", "food",
               "kids", "pets", "science", "people", "work", "miscellaneous", "humorists",
               "riddles", "sports", "art", "goedel", "magic", "medicine", "paradoxum", "tao",
               "definitions", "news"]
VAL_FRACTION = 0.05

NUM_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
NUM_WORDS.update({w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())})
SCALES = {"hundred": 100, "thousand": 1000}


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


# ---------------------------------------------------------------------------------------------
# questions
# ---------------------------------------------------------------------------------------------

def words_value(run: list) -> int:
    total, cur = 0, 0
    for w in run:
        if w in SCALES:
            cur = max(cur, 1) * SCALES[w]
            if w == "thousand":
                total, cur = total + cur, 0
        else:
            cur += NUM_WORDS[w]
    return total + cur


def the_number(text: str):
    """The one number a transcript says, as digits, or None (none, or more than one)."""
    t = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    digits = re.findall(r"\d+", t)
    words = re.findall(r"[a-z']+", re.sub(r"\d+", " ", t))
    runs, cur = [], []
    for w in words + [""]:
        if w in NUM_WORDS or (w in SCALES and cur):
            cur.append(w)
        elif w == "and" and cur and cur[-1] in SCALES:
            continue
        else:
            if cur:
                runs.append(cur)
            cur = []
    if len(digits) + len(runs) != 1:
        return None
    if digits:
        return str(int(digits[0])) if len(digits[0]) <= 6 else None
    return str(words_value(runs[0]))


def questions(text: str, rng: random.Random, vocab: list, n: int) -> list:
    """Up to n (question, answer) pairs about a transcript (see the module doc)."""
    words = normalise(text).split()
    if not words:
        return []
    cands = [("What is the first word?", words[0]), ("What is the last word?", words[-1])]
    num = the_number(text)
    if num is not None:
        cands += [("What number is said?", num)] * 2
    content = sorted({w for w in words if len(w) >= 3})
    if content:
        if rng.random() < 0.5:
            cands.append((f'Is the word "{rng.choice(content)}" said?', "yes"))
        else:
            others = [w for w in (rng.choice(vocab) for _ in range(20)) if w not in words]
            if others:
                cands.append((f'Is the word "{others[0]}" said?', "no"))
    if text.rstrip().endswith("?"):
        cands.append(("Is this a question?", "yes"))
    elif rng.random() < 0.25:  # most prompts are statements: ask less often
        cands.append(("Is this a question?", "no"))
    rng.shuffle(cands)
    out, seen = [], set()
    for q, a in cands:
        if q not in seen:
            seen.add(q)
            out.append((q, a))
    return out[:n]


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------

def read_wav(path: Path) -> tuple:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            die(f"{path}: need mono PCM16")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm.astype(np.float64) / 32768.0, w.getframerate()


def write_wav(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited resampling to n_out samples (FFT: truncate or zero-pad the spectrum)."""
    n = len(x)
    if n_out == n or n == 0:
        return x.copy()
    spec = np.fft.rfft(x)
    keep = min(len(spec), n_out // 2 + 1)
    out = np.zeros(n_out // 2 + 1, complex)
    out[:keep] = spec[:keep]
    return np.fft.irfft(out, n_out) * (n_out / n)


def band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / RATE)
    # 50 Hz raised-cosine edges
    g = np.clip((f - lo + 50) / 100, 0, 1) * np.clip((hi + 50 - f) / 100, 0, 1)
    return np.fft.irfft(spec * (0.5 - 0.5 * np.cos(np.pi * g)), len(x))


def augment(x: np.ndarray, rng: np.random.Generator) -> tuple:
    """One random augmentation (at least one of speed / telephone / noise); returns (x, tag)."""
    while True:
        speed = rng.choice([0.9, 1.0, 1.1], p=[0.25, 0.5, 0.25])
        tel = rng.random() < 0.3
        noisy = rng.random() < 0.6
        if speed != 1.0 or tel or noisy:
            break
    tags = []
    if speed != 1.0:  # play faster / slower
        x = resample(x, int(round(len(x) / speed)))
        tags.append(f"speed{speed}")
    if tel:
        x = band(x, 300.0, 3400.0)
        tags.append("tel")
    if noisy:
        snr = rng.uniform(5.0, 30.0)
        noise = rng.standard_normal(len(x))
        kind = "white"
        if rng.random() < 0.5:
            kind = "brown"
            noise = np.cumsum(noise)
            c = np.concatenate([[0.0], np.cumsum(noise)])
            k = np.arange(len(noise))
            lo, hi = np.maximum(k - 400, 0), np.minimum(k + 401, len(noise))
            noise -= (c[hi] - c[lo]) / (hi - lo)
        p_sig = np.mean(x ** 2) + 1e-12
        x = x + noise * np.sqrt(p_sig / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr / 10))
        tags.append(f"{kind}{snr:.0f}dB")
    gain = rng.uniform(-10.0, 6.0)
    x = x * 10 ** (gain / 20)
    peak = np.abs(x).max() if len(x) else 0.0
    if peak > 0.99:  # no clipping: scale down instead
        x = x * (0.99 / peak)
    tags.append(f"gain{gain:+.0f}dB")
    return x, "+".join(tags)


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------

SENT_OK = re.compile(r"^[A-Za-z][A-Za-z ,.'?!;:-]*[A-Za-z.?!]$")


def sentences_of(text: str) -> list:
    text = text.replace("`", "'").replace("''", "'")
    text = re.sub(r"\s+", " ", text)
    parts = re.split(r"(?<=[.?!])\s+(?=[A-Z])", text)
    out = []
    for p in parts:
        p = p.strip().strip("'\"").strip()
        if not SENT_OK.match(p) or "--" in p or " - " in p:
            continue
        n = len(p.split())
        if not 3 <= n <= 16:
            continue
        if sum(ch.isupper() for ch in p) > max(3, len(p) // 6):  # shouting, acronyms
            continue
        out.append(p)
    return out


def fortune_sentences(debs: Path) -> list:
    out = []
    for db in FORTUNE_DBS:
        f = debs / "usr/share/games/fortunes" / db
        if not f.exists():
            die(f"{f} is missing (fortunes-min / fortunes not unpacked?)")
        for cookie in f.read_text(errors="replace").split("\n%\n"):
            lines = [ln for ln in cookie.splitlines() if not ln.strip().startswith("--")]
            if any(ln.startswith(("\t\t", "        ")) for ln in lines):
                pass  # indented attributions / verse are fine once dashes are gone
            out += sentences_of(" ".join(lines))
    return out


def flite_sentences(debs: Path) -> list:
    out = []
    for f in sorted(glob.glob(str(debs / "usr/share/doc/flite/examples/*"))):
        out += sentences_of(Path(f).read_text(errors="replace"))
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def rel(p: Path) -> str:
    return str(p)


def asterisk_references() -> dict:
    """Prompt name -> words of asterisk-core-sounds-en's text file, as the lists were made.

    Left out: only a prompt whose whole text is one `[...]` span. tools/whisper_wer.py's
    `references()` later also dropped `<...>` and `(...)` texts (a WER rule); the lists keep
    the original rule so that they stay the ones the projector was trained and scored on."""
    refs = {}
    text = (TRANSCRIPTS / "asterisk-core-sounds-en.txt").read_text(errors="replace")
    for line in text.splitlines():
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        name, words = line.split(":", 1)
        words = words.strip()
        if words.startswith("[") and words.endswith("]"):
            continue
        refs[name.strip()] = words
    return refs


def transcription(name: str, prefix: str) -> list:
    """(path, text, 0.0) of a pocketsphinx `<s>text</s> (id)` file's clips, PSPHINX/prefix-id.wav."""
    out = []
    for line in (ROOT / ".cache/whisper/transcripts" / name).read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            p = PSPHINX / f"{prefix}-{m.group(2)}.wav"
            if not p.exists():
                die(f"{p} missing; run tools/setup_distil_data.sh")
            out.append((rel(p), clean(m.group(1)), 0.0))
    return out


def real_speech(seed: int) -> dict:
    """The real-speech split (no audio is read beyond WAV headers): `asterisk` (every prompt
    <= 30 s), `held` (its held-out half), `librivox`, `cards`, `heldout` (held + librivox),
    `held_norm` (their normalised texts), `dropped` and `train_real` (the training half less
    the prompts whose text equals a held-out one, + cards). Paths are relative to ROOT."""
    os.chdir(ROOT)
    refs = asterisk_references()
    asterisk = []
    for p in sorted(SPEECH.rglob("*.wav")):
        key = str(p.relative_to(SPEECH).with_suffix(""))
        if key not in refs:
            continue
        with wave.open(str(p)) as w:
            secs = w.getnframes() / w.getframerate()
        if secs > MAX_SECONDS:
            print(f"left out (over 30 s): {p} ({secs:.1f} s)")
            continue
        asterisk.append((rel(p), clean(refs[key]), secs))
    if len(asterisk) < 500:
        die(f"only {len(asterisk)} English Asterisk prompts with words found under {SPEECH}")
    order = list(range(len(asterisk)))
    random.Random(seed).shuffle(order)
    held_idx = set(order[:len(order) // 2])
    held = [asterisk[i] for i in sorted(held_idx)]
    train_real = [asterisk[i] for i in range(len(asterisk)) if i not in held_idx]
    librivox = transcription("librivox.transcription", "librivox")
    cards = transcription("cards.transcription", "cards")
    heldout = held + librivox
    held_norm = {normalise(t) for _, t, _ in heldout}
    dropped = [r for r in train_real if normalise(r[1]) in held_norm]
    train_real = [r for r in train_real if normalise(r[1]) not in held_norm] + cards
    return {"asterisk": asterisk, "held": held, "librivox": librivox, "cards": cards,
            "heldout": heldout, "held_norm": held_norm, "dropped": dropped,
            "train_real": train_real}


def write_tsv(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:
        for c in r:
            if "\t" in str(c) or "\n" in str(c):
                die(f"tab or newline in a list field: {c!r}")
    path.write_text(tsv_text(rows))


def tsv_text(rows: list) -> str:
    return "".join("\t".join(str(c) for c in r) + "\n" for r in rows)


def check_lists(lists: dict) -> bool:
    """Compares each made list with the committed file of its name; prints one line per file."""
    same = True
    for name, rows in lists.items():
        made = tsv_text(rows)
        committed = (LISTS / name).read_text()
        if made == committed:
            print(f"same: {name} ({len(rows)} lines)")
            continue
        same = False
        a, b = committed.splitlines(), made.splitlines()
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"DIFFERS: {name}: committed {len(a)} lines, made {len(b)}; first difference at "
              f"line {first + 1}:\n  committed: {a[first] if first < len(a) else '(end)'}\n"
              f"  made:      {b[first] if first < len(b) else '(end)'}")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--debs", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path(".cache/audio-llm-train"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--n-synth", type=int, default=1500)
    ap.add_argument("--real-copies", type=int, default=3)
    ap.add_argument("--check", action="store_true",
                    help="write no audio and no list; compare the lists made with the committed "
                         "ones and exit 1 if any differs")
    args = ap.parse_args()
    os.chdir(ROOT)
    rng = random.Random(args.seed)

    # ---- real speech --------------------------------------------------------------------------
    real = real_speech(args.seed)
    asterisk, held, librivox, cards = real["asterisk"], real["held"], real["librivox"], real["cards"]
    heldout, held_norm, dropped = real["heldout"], real["held_norm"], real["dropped"]
    train_real = real["train_real"]
    print(f"real: {len(asterisk)} Asterisk prompts <= 30 s -> {len(held)} held out + "
          f"{len(asterisk) - len(held)} for training ({len(dropped)} dropped: same text as a "
          f"held-out prompt, e.g. {dropped[0][1] if dropped else '-'!r}); {len(librivox)} "
          f"LibriVox (held out), {len(cards)} AN4 cards (training)")

    # ---- text for synthesis -------------------------------------------------------------------
    fort = fortune_sentences(args.debs)
    fl = flite_sentences(args.debs)
    ast_train = [t for _, t, _ in train_real if SENT_OK.match(t) or re.search(r"\d", t)]
    numbered = []
    for t in ast_train:
        if the_number(t) is not None and re.search(r"\b\d{1,3}\b", t):
            for _ in range(3):
                numbered.append(re.sub(r"\b\d{1,3}\b", lambda m: str(rng.choice(
                    [rng.randrange(10), rng.randrange(100), rng.randrange(1000)])), t, count=1))
    pools = {"fortunes": sorted(set(fort)), "flite-examples": sorted(set(fl)),
             "asterisk-train": sorted(set(ast_train)), "asterisk-numbers": sorted(set(numbered))}
    pools = {k: [s for s in v if normalise(s) not in held_norm] for k, v in pools.items()}
    for k, v in pools.items():
        print(f"text pool {k}: {len(v)} sentences")
    weights = {"fortunes": 0.6, "flite-examples": 0.1, "asterisk-train": 0.15,
               "asterisk-numbers": 0.15}

    # ---- synthesis ----------------------------------------------------------------------------
    debs = args.debs.resolve()
    flite = debs / "usr/bin/flite"
    env = dict(os.environ, LD_LIBRARY_PATH=str(debs / "usr/lib/x86_64-linux-gnu"))
    out_audio = args.out / "audio"
    synth, recipe = [], []
    voices = list(VOICES)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n_synth):
            src = rng.choices(list(weights), [weights[k] for k in weights])[0]
            text = rng.choice(pools[src])
            voice = voices[i % len(voices)]
            f0lo, f0hi = VOICES[voice]
            stretch, f0 = rng.uniform(0.8, 1.3), rng.uniform(f0lo, f0hi)
            raw = Path(tmp) / "x.wav"
            subprocess.run([str(flite), "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
                            "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", str(raw)],
                           env=env, check=True, capture_output=True)
            x, sr = read_wav(raw)
            if sr != RATE:
                x = resample(x, int(round(len(x) * RATE / sr)))
            arng = np.random.default_rng([args.seed, 1, i])
            tag = "clean"
            if arng.random() < 0.5:
                x, tag = augment(x, arng)
            if len(x) / RATE > MAX_SECONDS:
                continue
            p = out_audio / "synth" / voice / f"{i:05d}.wav"
            if not args.check:
                write_wav(p, x)
            synth.append((rel(p), text, len(x) / RATE))
            recipe.append((rel(p), voice, f"{stretch:.3f}", f"{f0:.1f}", tag, src, text))
            if (i + 1) % 250 == 0:
                print(f"synthesised {i + 1}/{args.n_synth}", flush=True)

    # ---- augmented copies of the real training prompts ----------------------------------------
    real_rows = []  # (path, text, group)
    for j, (p, text, _) in enumerate(train_real):
        group = "real:" + p
        real_rows.append((p, text, group))
        x, sr = read_wav(ROOT / p)
        if sr != RATE:
            die(f"{p}: {sr} Hz")
        for c in range(1, args.real_copies):
            arng = np.random.default_rng([args.seed, 2, j, c])
            y, tag = augment(x, arng)
            q = out_audio / "real" / f"{hashlib.sha1(p.encode()).hexdigest()[:12]}-{c}.wav"
            if not args.check:
                write_wav(q, y)
            real_rows.append((rel(q), text, group))
            recipe.append((rel(q), "real:" + p, "", "", tag, "asterisk-train-aug", text))

    # ---- splits and questions -----------------------------------------------------------------
    rows = real_rows + [(p, t, "synth:" + p) for p, t, _ in synth]
    groups = sorted({g for _, _, g in rows})
    random.Random(args.seed + 1).shuffle(groups)
    val_groups = set(groups[:int(len(groups) * VAL_FRACTION)])
    train = [(p, t) for p, t, g in rows if g not in val_groups]
    val = [(p, t) for p, t, g in rows if g in val_groups]
    vocab = sorted({w for _, t in train for w in normalise(t).split() if len(w) >= 3})
    qrng = random.Random(args.seed + 2)
    train_qa = [(p, q, a) for p, t in train for q, a in questions(t, qrng, vocab, 2)]
    val_qa = [(p, q, a) for p, t in val for q, a in questions(t, qrng, vocab, 1)]
    hrng = random.Random(args.seed + 3)
    held_rows = [(p, t) for p, t, _ in heldout]
    held_qa = [(p, q, a) for p, t in held_rows for q, a in questions(t, hrng, vocab, 2)]

    lists = {"heldout_real.tsv": held_rows, "heldout_real_qa.tsv": held_qa, "train.tsv": train,
             "train_qa.tsv": train_qa, "val.tsv": val, "val_qa.tsv": val_qa,
             "synth_recipe.tsv": recipe}
    hrs = lambda xs: sum(s for *_, s in xs) / 3600  # noqa: E731
    print(f"held-out real: {len(held_rows)} utterances ({len(held)} Asterisk + {len(librivox)} "
          f"LibriVox), {len(held_qa)} questions")
    print(f"train: {len(train)} utterances ({len(real_rows)} real incl. augmented copies, "
          f"{len(synth)} synthetic, {hrs(synth):.2f} h synthetic), {len(train_qa)} questions; "
          f"val: {len(val)} utterances, {len(val_qa)} questions")
    if args.check:
        sys.exit(0 if check_lists(lists) else 1)
    for name, rows in lists.items():
        write_tsv(LISTS / name, rows)
    print(f"wrote the lists to {LISTS}")


if __name__ == "__main__":
    main()
