#!/usr/bin/env python3
"""Builds the distillation corpus (extra speech for tools/distil_ecapa.py) from Debian packages.

    prepare_distil_audio.py --debs DIR --speech .cache/speech --out DIR [--seed 20261121]

DIR holds the extracted packages (tools/setup_distil_data.sh): `flite` + `libflite1` (voices
kal, kal16, awb, rms, slt speak generated sentences at several rates and pitches),
`klettres-data` (letters and syllables of ~20 languages, Ogg Vorbis, joined into 2-4 s
utterances per language folder), `pocketsphinx-testdata` (LibriVox and AN4 clips). Output:
16 kHz PCM16 mono WAV under OUT/{flite,klettres,pocketsphinx}/ and OUT/MANIFEST.tsv. Runs with
the set-up venv that has PyAV (.cache/pyenv); deterministic for a given seed.
"""
import argparse
import glob
import os
import random
import re
import subprocess
import sys
import tempfile
import wave

from array import array

import av

RATE = 16000
VOICES = {  # voice -> (mean F0 range in Hz for int_f0_target_mean)
    "kal": (85, 130), "kal16": (85, 130), "awb": (85, 135), "rms": (80, 125), "slt": (140, 210),
}
SENTENCES_PER_VOICE = 240


def write_wav(path, pcm):
    """pcm: array('h') of 16 kHz samples (the venv has PyAV only, no numpy)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if sys.byteorder != "little":
        pcm = array("h", pcm)
        pcm.byteswap()
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def decode_any(path):
    """Any file PyAV reads -> mono int16 samples at 16 kHz (mixed down, resampled by swresample)."""
    out = array("h")
    with av.open(path) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                out.frombytes(bytes(f.planes[0])[: 2 * f.samples])
        for f in resampler.resample(None):
            out.frombytes(bytes(f.planes[0])[: 2 * f.samples])
    if sys.byteorder != "little":
        out.byteswap()
    return out


def vocabulary(speech_root, debs):
    words = set()
    for p in glob.glob(os.path.join(speech_root, "allison", "en", "*.wav")):
        words.update(w for w in re.split(r"[-_0-9.]+", os.path.basename(p)[:-4].lower()) if len(w) > 2)
    texts = glob.glob(os.path.join(debs, "usr/share/doc/flite/examples/*.txt"))
    texts += glob.glob(os.path.join(debs, "usr/share/pocketsphinx/test/data/*/*transcription*"))
    for t in texts:
        with open(t, errors="replace") as f:
            words.update(w for w in re.findall(r"[a-z]+", f.read().lower()) if len(w) > 2)
    return sorted(words)


def synth_flite(debs, out, rng, manifest):
    flite = os.path.join(debs, "usr/bin/flite")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(debs, "usr/lib/x86_64-linux-gnu"))
    vocab = vocabulary(args.speech, debs)
    if len(vocab) < 200:
        sys.exit(f"error: only {len(vocab)} words found for flite sentences")
    with tempfile.TemporaryDirectory() as tmp:
        for voice, (f0lo, f0hi) in VOICES.items():
            for i in range(SENTENCES_PER_VOICE):
                text = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 14)))
                stretch = rng.uniform(0.8, 1.3)
                f0 = rng.uniform(f0lo, f0hi)
                raw = os.path.join(tmp, "x.wav")
                subprocess.run([flite, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
                                "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", raw],
                               env=env, check=True, capture_output=True)
                x = decode_any(raw)
                rel = f"flite/{voice}/{i:04d}.wav"
                write_wav(os.path.join(out, rel), x)
                manifest.append((rel, f"flite-{voice}", len(x) / RATE))


skipped = []


def join_klettres(debs, out, rng, manifest):
    root = os.path.join(debs, "usr/share/klettres")
    for lang in sorted(os.listdir(root)):
        clips = sorted(glob.glob(os.path.join(root, lang, "*", "*.ogg")))
        if len(clips) < 5:
            continue
        audio = []
        for c in clips:
            try:
                audio.append(decode_any(c))
            except av.error.FFmpegError as e:  # a few clips use codecs FFmpeg lacks (Speex-in-Ogg)
                skipped.append(f"{c}: {e}")
        audio = [a for a in audio if len(a) > 0.2 * RATE]
        if len(audio) < 5:
            continue
        n_utts = max(4, min(40, len(audio) // 3))
        for i in range(n_utts):
            x, goal = array("h"), rng.uniform(2.0, 4.0) * RATE
            while len(x) < goal:
                x.extend(audio[rng.randrange(len(audio))])
                x.extend(array("h", bytes(2 * int(rng.uniform(0.05, 0.25) * RATE))))
            rel = f"klettres/{lang}/{i:03d}.wav"
            write_wav(os.path.join(out, rel), x)
            manifest.append((rel, f"klettres-{lang}", len(x) / RATE))


def copy_sphinx(debs, out, manifest):
    for p in sorted(glob.glob(os.path.join(debs, "usr/share/pocketsphinx/test/data/*/*.wav"))):
        x = decode_any(p)
        rel = f"pocketsphinx/{os.path.basename(os.path.dirname(p))}-{os.path.basename(p)}"
        write_wav(os.path.join(out, rel), x)
        manifest.append((rel, "pocketsphinx-" + os.path.basename(os.path.dirname(p)), len(x) / RATE))


def main():
    global args
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", required=True)
    ap.add_argument("--speech", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261121)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    manifest = []
    synth_flite(args.debs, args.out, rng, manifest)
    join_klettres(args.debs, args.out, rng, manifest)
    copy_sphinx(args.debs, args.out, manifest)
    with open(os.path.join(args.out, "MANIFEST.tsv"), "w") as f:
        f.write("path\tsource\tseconds\n")
        for rel, src, sec in manifest:
            f.write(f"{rel}\t{src}\t{sec:.3f}\n")
    if skipped:
        print(f"note: {len(skipped)} klettres clips not decodable, left out (first: {skipped[0]})",
              file=sys.stderr)
    hours = sum(m[2] for m in manifest) / 3600
    print(f"distillation corpus: {len(manifest)} files, {hours:.2f} h at {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
