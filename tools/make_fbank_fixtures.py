#!/usr/bin/env python3
"""Writes the fbank parity fixtures under fixtures/fbank/ from real speech.

Reference features come from the `kaldi-native-fbank` PyPI package (the front end of
sherpa-onnx); runtime/tests/fbank_parity.rs checks runtime::audio::fbank against them.

Input: a corpus laid out as <root>/<speaker>/<lang>/*.wav (16 kHz, 16-bit mono), by default
.cache/speech (Debian asterisk prompt packages). Each chosen utterance is clipped to at most
2 s and committed as 16-bit PCM in fixtures/fbank/wav/, so the test needs nothing else.

Output:
  fixtures/fbank/wav/<utt>.wav                 the clips
  fixtures/fbank/feats/<setting>/<utt>.f32     little-endian f32, row-major [frames x dim]
  fixtures/fbank/index.json                    settings (FbankConfig JSON keys) and per
                                               utterance: speaker, lang, source, samples,
                                               and per setting: file, frames, dim

Usage: python tools/make_fbank_fixtures.py [--corpus DIR] [--out DIR] [--per-dir N]
Requires: numpy, kaldi-native-fbank (tested with 1.22.4).
"""

import argparse
import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import kaldi_native_fbank as knf

CLIP_SECONDS = 2.0
MIN_SECONDS = 1.2

# Our FbankConfig defaults (runtime/src/audio/fbank.rs); each setting overrides some keys.
DEFAULTS = {
    "sample_rate": 16000,
    "num_mel_bins": 80,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
    "window": "povey",
    "preemph_coeff": 0.97,
    "remove_dc_offset": True,
    "low_freq": 20.0,
    "high_freq": 0.0,
    "dither": 0.0,
    "snip_edges": True,
    "round_to_power_of_two": True,
    "input_scale": 32768.0,
    "use_energy": False,
    "raw_energy": True,
    "energy_floor": 0.0,
    "use_log_fbank": True,
    "use_power": True,
    "mean_norm": "none",
}

# name -> (overrides, how many utterances: None = all)
SETTINGS = {
    # (a) sherpa-onnx speaker models
    "sherpa_povey": ({"window": "povey", "high_freq": -400.0}, None),
    # (b) hamming window up to Nyquist (WeSpeaker-style)
    "hamming_nyquist": ({"window": "hamming", "high_freq": 0.0}, None),
    # extra coverage on a few utterances
    "edges_energy": (
        {"snip_edges": False, "use_energy": True, "raw_energy": True}, 3),
    "hanning_misc": (
        {
            "window": "hanning", "snip_edges": False, "use_energy": True,
            "raw_energy": False, "energy_floor": 1.0, "input_scale": 1.0,
            "preemph_coeff": 0.0, "remove_dc_offset": False, "low_freq": 60.0,
            "high_freq": 7000.0, "num_mel_bins": 40, "use_power": False,
        },
        3,
    ),
    "blackman_23": (
        {
            "window": "blackman", "num_mel_bins": 23, "low_freq": 0.0,
            "high_freq": -200.0, "use_energy": True, "energy_floor": 1.0e8,
        },
        3,
    ),
    "rectangular_64": (
        {
            "window": "rectangular", "num_mel_bins": 64, "frame_length_ms": 32.0,
            "frame_shift_ms": 12.5, "preemph_coeff": 0.5,
        },
        3,
    ),
}


def knf_options(cfg):
    opts = knf.FbankOptions()
    fo = opts.frame_opts
    fo.samp_freq = float(cfg["sample_rate"])
    fo.frame_length_ms = cfg["frame_length_ms"]
    fo.frame_shift_ms = cfg["frame_shift_ms"]
    fo.window_type = cfg["window"]
    fo.preemph_coeff = cfg["preemph_coeff"]
    fo.remove_dc_offset = cfg["remove_dc_offset"]
    fo.dither = cfg["dither"]
    fo.snip_edges = cfg["snip_edges"]
    fo.round_to_power_of_two = cfg["round_to_power_of_two"]
    mo = opts.mel_opts
    mo.num_bins = cfg["num_mel_bins"]
    mo.low_freq = cfg["low_freq"]
    mo.high_freq = cfg["high_freq"]
    opts.use_energy = cfg["use_energy"]
    opts.raw_energy = cfg["raw_energy"]
    opts.energy_floor = cfg["energy_floor"]
    opts.use_log_fbank = cfg["use_log_fbank"]
    opts.use_power = cfg["use_power"]
    assert cfg["mean_norm"] == "none"
    return opts


def reference(cfg, samples):
    fb = knf.OnlineFbank(knf_options(cfg))
    scaled = (samples * np.float32(cfg["input_scale"])).astype(np.float32)
    fb.accept_waveform(float(cfg["sample_rate"]), scaled.tolist())
    fb.input_finished()
    n = fb.num_frames_ready
    return np.array([fb.get_frame(i) for i in range(n)], dtype=np.float32).reshape(n, -1)


def read_pcm16(path):
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            return None, None
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data, rate


def clip(data, rate, from_start):
    n = int(CLIP_SECONDS * rate)
    if len(data) <= n:
        return data
    if from_start:
        return data[:n]
    # The 2 s window with the most energy, in 0.1 s steps.
    step = rate // 10
    energy = np.cumsum(np.concatenate([[0.0], data.astype(np.float64) ** 2]))
    starts = range(0, len(data) - n + 1, step)
    best = max(starts, key=lambda s: energy[s + n] - energy[s])
    return data[best:best + n]


def choose(corpus, per_dir):
    chosen = []
    for lang_dir in sorted(p for p in corpus.glob("*/*") if p.is_dir()):
        speaker, lang = lang_dir.parent.name, lang_dir.name
        eligible = []
        for f in sorted(lang_dir.glob("*.wav")):
            data, rate = read_pcm16(f)
            if data is not None and rate == 16000 and len(data) >= MIN_SECONDS * rate:
                eligible.append((f, data, rate))
        if not eligible:
            continue
        k = min(per_dir, len(eligible))
        picks = [eligible[(i * len(eligible)) // k] for i in range(k)]
        for j, (f, data, rate) in enumerate(picks):
            chosen.append((speaker, lang, f, clip(data, rate, from_start=(j == 0)), rate))
    return chosen


def main():
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=root / ".cache" / "speech")
    ap.add_argument("--out", type=Path, default=root / "fixtures" / "fbank")
    ap.add_argument("--per-dir", type=int, default=3)
    args = ap.parse_args()

    chosen = choose(args.corpus, args.per_dir)
    speakers = {c[0] for c in chosen}
    if len(chosen) < 20 or len(speakers) < 3:
        sys.exit(f"need >= 20 utterances from >= 3 speakers under {args.corpus}, "
                 f"found {len(chosen)} from {len(speakers)}")

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "wav").mkdir(parents=True)
    settings = {}
    for name, (over, _) in SETTINGS.items():
        cfg = dict(DEFAULTS)
        cfg.update(over)
        settings[name] = cfg
        (args.out / "feats" / name).mkdir(parents=True)

    # Which utterances each setting covers: all, or `count` spread over the list (and shifted
    # per setting so that different settings see different speakers).
    covers = {}
    for s_idx, (name, (_, count)) in enumerate(SETTINGS.items()):
        n = len(chosen)
        if count is None:
            covers[name] = set(range(n))
        else:
            step = n // count
            covers[name] = {(k * step + s_idx) % n for k in range(count)}

    utterances = []
    for i, (speaker, lang, src, data, rate) in enumerate(chosen):
        utt = f"{speaker}-{lang}-{src.stem}"
        with wave.open(str(args.out / "wav" / f"{utt}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(data.astype("<i2").tobytes())
        samples = data.astype(np.float32) / np.float32(32768.0)
        entry = {
            "utterance": utt,
            "wav": f"wav/{utt}.wav",
            "speaker": speaker,
            "lang": lang,
            "source": str(src.relative_to(args.corpus)),
            "samples": int(len(data)),
            "features": {},
        }
        for name in SETTINGS:
            if i not in covers[name]:
                continue
            feats = reference(settings[name], samples)
            rel = f"feats/{name}/{utt}.f32"
            feats.astype("<f4").tofile(args.out / rel)
            entry["features"][name] = {
                "file": rel, "frames": int(feats.shape[0]), "dim": int(feats.shape[1]),
            }
        utterances.append(entry)

    index = {
        "generator": f"kaldi-native-fbank {getattr(knf, '__version__', '?')}",
        "tolerance": 1e-3,
        "settings": settings,
        "utterances": utterances,
    }
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(utterances)} utterances, {len(speakers)} speakers, "
          f"{len(settings)} settings, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
