"""`whisper_ct2.py reference`: transformers transcripts (greedy, no timestamps, 30 s windows
joined with a space) of WAV files as `path<TAB>text` lines, and the log-mel / sample fixtures of
two clips for the Rust front-end tests (.cache/whisper/tiny.en/ref/).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from whisper_common import (CHECK_CLIPS, HF_DIR, REF_DIR, atomic_write_bytes, die,
                            feature_extractor, load_hf, log_mel, read_wav, strip_prompt)

def cmd_reference(args) -> None:
    import torch
    from tokenizers import Tokenizer
    torch.set_num_threads(args.threads)
    model = load_hf()
    fe = feature_extractor(model.config.num_mel_bins)
    tok = Tokenizer.from_file(str(HF_DIR / "tokenizer.json"))
    wavs = [Path(p) for p in args.wavs]
    if args.list:
        wavs += [Path(l.split("\t")[0]) for l in Path(args.list).read_text().splitlines()
                 if l.strip() and not l.startswith("#")]
    if not wavs:
        die("no WAV files given")
    gen = model.generation_config
    sot, nots, eot = gen.decoder_start_token_id, gen.no_timestamps_token_id, gen.eos_token_id
    # audio over 30 s is cut into consecutive 30 s windows, each transcribed on its own and the
    # texts joined with a space (what `voxq transcribe` does)
    windows = []  # (file index, samples)
    for i, p in enumerate(wavs):
        s = read_wav(p)
        windows += [(i, s[k:k + 480000]) for k in range(0, max(len(s), 1), 480000)]
    texts = [[] for _ in wavs]
    for start in range(0, len(windows), args.batch):
        chunk = windows[start:start + args.batch]
        feats = np.concatenate([log_mel(fe, s) for _, s in chunk])
        with torch.no_grad():
            out = model.generate(torch.from_numpy(feats), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, num_beams=1, return_timestamps=False)
        for (i, _), row in zip(chunk, out.tolist()):
            ids = strip_prompt(row, sot, nots, eot)
            ids = [t for t in ids if t != eot]
            text = tok.decode(ids, skip_special_tokens=True).strip()
            if text:
                texts[i].append(text)
        print(f"{min(start + args.batch, len(windows))}/{len(windows)} windows", flush=True)
    lines = [f"{p}\t{' '.join(t)}" for p, t in zip(wavs, texts)]
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
        print(f"wrote {len(lines)} transcripts to {out}")

    # log-mel fixtures for the Rust front end
    REF_DIR.mkdir(parents=True, exist_ok=True)
    for clip in CHECK_CLIPS[:2] if not args.no_fixtures else []:
        s = read_wav(clip)
        feats = log_mel(fe, s)[0]
        stem = clip.stem
        np.save(REF_DIR / f"{stem}.samples.npy", s)
        np.save(REF_DIR / f"{stem}.logmel.npy", feats)
        shutil.copy(clip, REF_DIR / f"{stem}.wav")
        print(f"fixture {stem}: {len(s)} samples -> log-mel {feats.shape} "
              f"(min {feats.min():.4f}, max {feats.max():.4f}) in {REF_DIR}")
