#!/usr/bin/env python3
"""Small, deterministic lists for `make demo` (standard library only).

demo_trials.txt: every pair among a subset of the trial utterances of fixtures/trials/trials.txt
(every STEP-th utterance of each speaker, sorted), so the demo's trial list has many target and
non-target trials over few utterances (embedding is the cost, scoring is free).
demo_calib.txt: every STEP-th line of fixtures/trials/calib.txt (disjoint from all trials).

    python3 tools/make_demo_lists.py --trials fixtures/trials/trials.txt \
        --calib fixtures/trials/calib.txt --out fixtures/trials --step 4
"""
import argparse
import itertools
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=Path, required=True)
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--step", type=int, default=4)
    a = ap.parse_args()

    utts = set()
    for line in a.trials.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            utts.update(parts[1:3])
    by_speaker = defaultdict(list)
    for u in sorted(utts):
        by_speaker[u.split("/")[0]].append(u)
    chosen = []
    for spk in sorted(by_speaker):
        chosen += by_speaker[spk][:: a.step]
    lines = []
    for x, y in itertools.combinations(sorted(chosen), 2):
        same = x.split("/")[0] == y.split("/")[0]
        xlang = same and x.split("/")[1] != y.split("/")[1]
        lines.append(f"{int(same)} {x} {y}" + (" xlang" if xlang else ""))
    (a.out / "demo_trials.txt").write_text("\n".join(lines) + "\n")

    calib = [l for l in a.calib.read_text().splitlines() if l.strip()]
    (a.out / "demo_calib.txt").write_text("\n".join(calib[:: a.step]) + "\n")
    tgt = sum(l.startswith("1 ") for l in lines)
    print(f"{len(chosen)} utterances, {len(lines)} trials ({tgt} target, {len(lines) - tgt} non-target); "
          f"{len(calib[:: a.step])} calibration utterances")


if __name__ == "__main__":
    main()
