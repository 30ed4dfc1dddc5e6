#!/usr/bin/env python3
"""Builds the real-speech corpus from extracted Debian asterisk prompt packages.

Run by tools/setup_speech.sh inside the set-up venv (.cache/pyenv, PyAV only):

    prepare_speech.py --src EXTRACTED_DIR --out OUT_DIR

EXTRACTED_DIR holds one `dpkg -x` tree per package (EXTRACTED_DIR/<package>/usr/...).
Every prompt is decoded once (G.722 -> 16 kHz, GSM 06.10 and 8 kHz PCM WAV -> 8 kHz, then
upsampled 2x to 16 kHz with libswresample in int16 arithmetic, which is bit-exact across CPUs)
and written as 16-bit PCM mono 16 kHz WAV to OUT_DIR/<speaker>/<lang>/<relative-name>.wav.
`silence/` prompts and `tt-monkeys` (monkey noises) are left out; a prompt whose decoded audio
is identical to an earlier one of the same speaker and language is left out as a duplicate.
OUT_DIR/MANIFEST.tsv lists every file written with its source and duration.
"""
import argparse
import hashlib
import os
import sys
import wave

import av

RATE = 16000

# speaker, lang, package, folder under usr/share/asterisk/sounds, path component to drop, codec
SOURCES = [
    ("allison", "en", "asterisk-core-sounds-en-g722", "en_US_f_Allison", None, "g722"),
    ("allison", "es", "asterisk-core-sounds-es-g722", "es_MX_f_Allison", None, "g722"),
    ("june", "fr", "asterisk-core-sounds-fr-g722", "fr_CA_f_June", None, "g722"),
    ("carlo", "it", "asterisk-core-sounds-it-g722", "it_IT_m_Carlo", None, "g722"),
    ("ivrvoice", "ru", "asterisk-core-sounds-ru-g722", "ru_RU_f_IvrvoiceRU", None, "g722"),
    ("menardi", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", None, "wav"),
    ("armelle", "fr", "asterisk-prompt-fr-armelle", "", "fr", "gsm"),
    ("july", "es", "asterisk-prompt-es-co", "", "es", "gsm"),
]
EXT = {"g722": ".g722", "wav": ".wav", "gsm": ".gsm"}
DEMUXER = {"g722": "g722", "wav": "wav", "gsm": "gsm"}


def decode(path, codec):
    """Decoded mono int16 PCM at 16 kHz as bytes, and the source's sample rate."""
    out = []
    with av.open(path, format=DEMUXER[codec]) as c:
        stream = c.streams.audio[0]
        src_rate = stream.codec_context.sample_rate
        if stream.codec_context.layout.nb_channels != 1:
            raise ValueError(f"{path}: {stream.codec_context.layout.nb_channels} channels, expected mono")
        # s16 in and out keeps libswresample on its integer path (bit-exact on every CPU)
        resampler = None if src_rate == RATE else av.AudioResampler(format="s16", layout="mono", rate=RATE)

        def take(frames):
            for f in frames:
                if f.format.name != "s16" or f.layout.nb_channels != 1:
                    raise ValueError(f"{path}: decoded {f.format.name}/{f.layout.name}, expected s16 mono")
                out.append(bytes(f.planes[0])[: 2 * f.samples])

        for frame in c.decode(audio=0):
            if resampler is None:
                take([frame])
            else:
                take(resampler.resample(frame))
        if resampler is not None:
            take(resampler.resample(None))
    return b"".join(out), src_rate


def prompts(src_root, pkg, folder, drop, codec):
    base = os.path.join(src_root, pkg, "usr/share/asterisk/sounds", folder)
    if not os.path.isdir(base):
        sys.exit(f"error: {base}: missing (package {pkg} not extracted?)")
    found = []
    for dirpath, dirnames, filenames in os.walk(base):  # os.walk does not follow the symlinked dirs
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not name.endswith(EXT[codec]) or os.path.islink(full):
                continue
            rel = os.path.relpath(full, base)[: -len(EXT[codec])]
            parts = rel.split(os.sep)
            if drop is not None:
                if drop not in parts:
                    continue
                parts.remove(drop)
            if parts[0] == "silence" or parts[-1] == "tt-monkeys":
                continue
            found.append(("/".join(parts), full))
    return sorted(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rows = []
    for speaker, lang, pkg, folder, drop, codec in SOURCES:
        seen = {}
        n_dup = 0
        for rel, full in prompts(args.src, pkg, folder, drop, codec):
            pcm, src_rate = decode(full, codec)
            if len(pcm) == 0:
                print(f"warning: {full}: no audio, skipped", file=sys.stderr)
                continue
            digest = hashlib.sha256(pcm).hexdigest()
            if digest in seen:
                n_dup += 1
                continue
            seen[digest] = rel
            relpath = f"{speaker}/{lang}/{rel}.wav"
            dst = os.path.join(args.out, relpath)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with wave.open(dst, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(pcm)
            src_rel = os.path.relpath(full, os.path.join(args.src, pkg))
            rows.append((relpath, speaker, lang, pkg, src_rel, codec, src_rate, len(pcm) // 2))
        n = sum(1 for r in rows if r[1] == speaker and r[2] == lang)
        print(f"{speaker}/{lang}: {n} prompts from {pkg} ({codec}), {n_dup} duplicates left out",
              file=sys.stderr)

    with open(os.path.join(args.out, "MANIFEST.tsv"), "w") as f:
        f.write("relpath\tspeaker\tlang\tpackage\tsource\tcodec\tsource_rate\tsamples_16k\tseconds\n")
        for r in rows:
            f.write("\t".join(map(str, r)) + f"\t{r[7] / RATE:.4f}\n")


if __name__ == "__main__":
    main()
