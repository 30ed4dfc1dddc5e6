#!/usr/bin/env python3
"""Builds the speaker-verification trial list and the calibration list over the speech corpus.

    make_trials.py [--audio-root .cache/speech] [--out fixtures/trials] [--seed 20261121]

Deterministic for a given corpus and seed (Python's `random.Random(seed)` over sorted inputs).
Only utterances of at least --min-seconds are used. Each speaker (allison counts once, her en
and es prompts together) gives --per-speaker utterances to the trial list and --calib-per-speaker
others to the calibration list, so the two never share an utterance. Target trials pair two
utterances of one speaker (for allison, half of them en vs es: these carry `xlang`);
nontarget trials are spread evenly over all speaker pairs.

Writes <out>/trials.txt (`<1|0> <enroll> <test> [xlang]`, paths relative to the audio root,
sorted), <out>/calib.txt (one path a line, sorted) and <out>/README.md.
Python 3 standard library only.
"""
import argparse
import itertools
import os
import random
import sys
import wave
from collections import Counter, defaultdict


def durations(root, min_seconds):
    """{(speaker, lang): [relpath, ...]} of the utterances >= min_seconds, sorted."""
    groups = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".wav"):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            parts = rel.split("/")
            if len(parts) < 3:
                continue
            with wave.open(full, "rb") as w:
                secs = w.getnframes() / w.getframerate()
            if secs >= min_seconds:
                groups[(parts[0], parts[1])].append(rel)
    for k in groups:
        groups[k].sort()
    return dict(sorted(groups.items()))


def split_counts(total, parts):
    """`total` spread over `parts` as evenly as integers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def sample_pairs(rng, pool, k):
    """k distinct pairs out of `pool` (a list of (a, b) tuples), in a stable order."""
    k = min(k, len(pool))
    return rng.sample(pool, k)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio-root", default=".cache/speech")
    ap.add_argument("--out", default="fixtures/trials")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--per-speaker", type=int, default=76)
    ap.add_argument("--calib-per-speaker", type=int, default=24)
    ap.add_argument("--targets-per-speaker", type=int, default=430)
    ap.add_argument("--nontargets", type=int, default=3003)
    ap.add_argument("--xlang-fraction", type=float, default=0.5,
                    help="share of a multi-language speaker's target trials that cross languages")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    groups = durations(args.audio_root, args.min_seconds)
    if not groups:
        sys.exit(f"error: {args.audio_root}: no utterances >= {args.min_seconds} s (run tools/setup_speech.sh)")
    speakers = sorted({s for s, _ in groups})
    lang_of = {}
    trial_utts, calib_utts = {}, []
    for spk in speakers:
        langs = sorted(l for s, l in groups if s == spk)
        n_trial = split_counts(args.per_speaker, len(langs))
        n_calib = split_counts(args.calib_per_speaker, len(langs))
        chosen = []
        for lang, nt, nc in zip(langs, n_trial, n_calib):
            pool = list(groups[(spk, lang)])
            rng.shuffle(pool)
            if len(pool) < nt + nc:
                sys.exit(f"error: {spk}/{lang}: {len(pool)} utterances >= {args.min_seconds} s, need {nt + nc}")
            chosen.append(sorted(pool[:nt]))
            calib_utts.extend(pool[nt:nt + nc])
            for u in pool[:nt]:
                lang_of[u] = lang
        trial_utts[spk] = chosen

    trials = []  # (label, enroll, test, xlang)

    def add(label, a, b):
        if rng.random() < 0.5:
            a, b = b, a
        trials.append((label, a, b, label == 1 and lang_of[a] != lang_of[b]))

    # target trials
    for spk in speakers:
        per_lang = trial_utts[spk]
        k = args.targets_per_speaker
        if len(per_lang) == 1:
            for a, b in sample_pairs(rng, list(itertools.combinations(per_lang[0], 2)), k):
                add(1, a, b)
            continue
        k_x = round(k * args.xlang_fraction)
        cross = [p for i, j in itertools.combinations(range(len(per_lang)), 2)
                 for p in itertools.product(per_lang[i], per_lang[j])]
        for a, b in sample_pairs(rng, cross, k_x):
            add(1, a, b)
        for utts, kk in zip(per_lang, split_counts(k - k_x, len(per_lang))):
            for a, b in sample_pairs(rng, list(itertools.combinations(utts, 2)), kk):
                add(1, a, b)

    # nontarget trials, evenly over speaker pairs
    flat = {spk: sorted(u for us in trial_utts[spk] for u in us) for spk in speakers}
    spk_pairs = list(itertools.combinations(speakers, 2))
    for (s1, s2), kk in zip(spk_pairs, split_counts(args.nontargets, len(spk_pairs))):
        for a, b in sample_pairs(rng, list(itertools.product(flat[s1], flat[s2])), kk):
            add(0, a, b)

    trials.sort(key=lambda t: (t[1], t[2], t[0]))
    if len({(t[1], t[2]) for t in trials}) != len(trials):
        sys.exit("error: duplicate trial")
    used = {u for t in trials for u in t[1:3]}
    calib_utts.sort()
    assert not used & set(calib_utts)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "trials.txt"), "w") as f:
        for label, a, b, x in trials:
            f.write(f"{label} {a} {b}{' xlang' if x else ''}\n")
    with open(os.path.join(args.out, "calib.txt"), "w") as f:
        f.write("".join(u + "\n" for u in calib_utts))

    # README with the counts
    n_tgt = sum(t[0] == 1 for t in trials)
    n_x = sum(t[3] for t in trials)
    by_group = Counter("/".join(u.split("/")[:2]) for u in used)
    calib_group = Counter("/".join(u.split("/")[:2]) for u in calib_utts)
    tgt_spk = Counter(t[1].split("/")[0] for t in trials if t[0] == 1)
    non_spk = Counter()
    for t in trials:
        if t[0] == 0:
            non_spk[t[1].split("/")[0]] += 1
            non_spk[t[2].split("/")[0]] += 1
    avail = {f"{s}/{l}": len(v) for (s, l), v in groups.items()}
    lines = [
        "# Speaker-verification trials over the real-speech corpus",
        "",
        "Made by `tools/make_trials.py` (deterministic; Python standard library only) from the corpus",
        "that `tools/setup_speech.sh` builds at `.cache/speech/` (asterisk prompts from Debian bookworm,",
        "16 kHz PCM16 mono):",
        "",
        "```",
        f"python3 tools/make_trials.py --audio-root .cache/speech --out fixtures/trials --seed {args.seed}",
        "```",
        "",
        f"Settings: seed {args.seed}, utterances >= {args.min_seconds} s only, {args.per_speaker} trial utterances "
        f"and {args.calib_per_speaker} calibration utterances per speaker (split evenly over a speaker's "
        f"languages), {args.targets_per_speaker} target trials per speaker ({args.xlang_fraction:.0%} of them "
        f"cross-language where a speaker has two languages), {args.nontargets} nontarget trials spread evenly "
        f"over the {len(spk_pairs)} speaker pairs.",
        "",
        "- `trials.txt`: one trial a line, `<1|0> <enroll> <test> [xlang]` (1 = same speaker; `xlang` marks a",
        "  target trial whose two utterances are in different languages: Allison Smith, en vs es). Paths are",
        "  relative to `.cache/speech/`. Sorted by enroll, then test path.",
        f"- `calib.txt`: {len(calib_utts)} utterances (>= {args.min_seconds} s) for calibration, none of which "
        "appears in `trials.txt`.",
        "",
        f"Totals: {len(trials)} trials = {n_tgt} target ({n_x} of them xlang) + {len(trials) - n_tgt} nontarget, "
        f"over {len(used)} distinct utterances.",
        "",
        "| speaker/lang | utterances >= 2 s in corpus | in trials | in calib |",
        "|---|---:|---:|---:|",
    ]
    for g in sorted(avail):
        lines.append(f"| {g} | {avail[g]} | {by_group[g]} | {calib_group[g]} |")
    lines += ["", "| speaker | target trials | nontarget trials it takes part in |", "|---|---:|---:|"]
    for s in speakers:
        lines.append(f"| {s} | {tgt_spk[s]} | {non_spk[s]} |")
    lines += [
        "",
        "Caveat: the 16 kHz speakers (allison, june, carlo, ivrvoice; G.722 sources) and the upsampled",
        "8 kHz ones (menardi, armelle, july; PCM/GSM sources) differ in bandwidth, so nontarget pairs",
        "across the two groups are easier than those within one group.",
        "",
    ]
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"{len(trials)} trials ({n_tgt} target, {n_x} xlang) over {len(used)} utterances; "
          f"{len(calib_utts)} calibration utterances", file=sys.stderr)


if __name__ == "__main__":
    main()
