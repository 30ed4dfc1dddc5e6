"""The eval and baseline subcommands of tools/train_projector.py: held-out WER and QA accuracy
of a checkpoint, and Whisper tiny.en's own WER on the same held-out clips.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from whisper_wer import edits, normalise
from projector_common import (EVAL_DIR, LISTS, MAX_NEW_ASR, MAX_NEW_QA, ROOT, THREADS, die, log,
                              read_list)
from projector_model import make_projector
from projector_data import generate, load_states, make_items, score, sdi
from projector_train import setup


def load_proj(ckpt: Path):
    import torch
    if not ckpt.exists():
        die(f"{ckpt} does not exist; run `train_projector.py train`")
    st = torch.load(ckpt, weights_only=False)
    proj = make_projector()
    proj.load_state_dict(st["proj"])
    return proj.eval(), st


def qa_kind(q: str) -> str:
    return "is the word X said" if q.startswith("Is the word") else q.rstrip("?").lower()


def cmd_eval(args) -> None:
    """WER of the audio LLM (torch path, greedy, asr task, <= 48 new tokens) on all held-out
    real speech and the val split; QA accuracy (exact match after normalisation) on the
    held-out questions, per question type, with the majority answer as a baseline."""
    d = setup(args, need_train=False)
    llm, prompts, texts = d["llm"], d["prompts"], d["texts"]
    proj, st = load_proj(Path(args.ckpt))
    held, held_qa = make_items(prompts, read_list("heldout_real.tsv"),
                               read_list("heldout_real_qa.tsv"), texts)
    val, _ = make_items(prompts, read_list("val.tsv"), [], texts)
    states = load_states([it["path"] for it in held + held_qa + val])
    EVAL_DIR.mkdir(parents=True, exist_ok=True)
    res = {"checkpoint": str(args.ckpt), "step": st["step"], "train_wall_min": st["wall"] / 60}
    t0 = time.time()
    hyps = {}
    for name, items in (("heldout_real", held), ("val", val)):
        r = score(prompts, items, generate(llm, prompts, proj, states, items, MAX_NEW_ASR))
        r["hyps"] = [" ".join(h.split()) for h in r["hyps"]]  # one line each (TSV)
        hyps[name] = r["hyps"]
        res[name] = {k: r[k] for k in ("wer", "errors", "words", "n")}
        lines = [f"{it['path']}\t{h}" for it, h in zip(items, r["hyps"])]
        (EVAL_DIR / f"{name}_llm.tsv").write_text("\n".join(lines) + "\n")
        per = ["path\terrors\tref_words\treference\thypothesis"]
        for it, h in zip(items, r["hyps"]):
            rw, hw = normalise(it["answer"]).split(), normalise(h).split()
            per.append(f"{it['path']}\t{edits(rw, hw)}\t{len(rw)}\t{it['answer']}\t{h}")
        (EVAL_DIR / f"{name}_llm_errors.tsv").write_text("\n".join(per) + "\n")
        log(f"{name}: WER {r['wer']:.2f}% ({r['errors']}/{r['words']}, {r['n']} utterances)")
    parts = np.array([sdi(normalise(it["answer"]).split(), normalise(h).split())
                      for it, h in zip(held, hyps["heldout_real"])])
    loops = sum(len(normalise(h).split()) > 2 * len(normalise(it["answer"]).split()) + 2
                for it, h in zip(held, hyps["heldout_real"]))
    res["heldout_real"].update(substitutions=int(parts[:, 0].sum()),
                               deletions=int(parts[:, 1].sum()),
                               insertions=int(parts[:, 2].sum()), runaway_utterances=loops,
                               exact_utterances=int((parts.sum(1) == 0).sum()))
    log(f"held-out errors: {parts[:, 0].sum()} substitutions, {parts[:, 1].sum()} deletions, "
        f"{parts[:, 2].sum()} insertions; {loops} utterances with more than 2 x + 2 the "
        f"reference's words; {(parts.sum(1) == 0).sum()} utterances exactly right")
    ast = [i for i, it in enumerate(held) if "librivox" not in it["path"]]
    lib = [i for i, it in enumerate(held) if "librivox" in it["path"]]
    for name, idx in (("heldout_asterisk", ast), ("heldout_librivox", lib)):
        e = sum(edits(normalise(held[i]["answer"]).split(),
                      normalise(hyps["heldout_real"][i]).split()) for i in idx)
        w = sum(len(normalise(held[i]["answer"]).split()) for i in idx)
        res[name] = {"wer": 100.0 * e / w, "errors": e, "words": w, "n": len(idx)}
    r = score(prompts, held_qa, generate(llm, prompts, proj, states, held_qa, MAX_NEW_QA))
    r["hyps"] = [" ".join(h.split()) for h in r["hyps"]]
    kinds = {}
    for it, h in zip(held_qa, r["hyps"]):
        k = kinds.setdefault(qa_kind(it["question"]), {"n": 0, "right": 0, "answers": {}})
        k["n"] += 1
        k["right"] += normalise(it["answer"]).split() == normalise(h).split()
        k["answers"][it["answer"]] = k["answers"].get(it["answer"], 0) + 1
    for k in kinds.values():
        k["acc"] = 100.0 * k["right"] / k["n"]
        k["majority_acc"] = 100.0 * max(k.pop("answers").values()) / k["n"]
    res["heldout_qa"] = {"acc": r["acc"], "right": r["right"], "n": r["n"], "by_type": kinds}
    lines = ["path\tquestion\tanswer\tprediction\tcorrect"]
    for it, h in zip(held_qa, r["hyps"]):
        ok = normalise(it["answer"]).split() == normalise(h).split()
        lines.append(f"{it['path']}\t{it['question']}\t{it['answer']}\t{h}\t{int(ok)}")
    (EVAL_DIR / "heldout_real_qa_llm.tsv").write_text("\n".join(lines) + "\n")
    log(f"held-out QA accuracy {r['acc']:.1f}% ({r['right']}/{r['n']}); by type: "
        + "; ".join(f"{k} {v['acc']:.0f}% (majority {v['majority_acc']:.0f}%, n {v['n']})"
                    for k, v in kinds.items()))
    res["eval_wall_s"] = time.time() - t0
    (EVAL_DIR / "summary.json").write_text(json.dumps(res, indent=2) + "\n")
    log(f"wrote {EVAL_DIR}/summary.json")


def cmd_baseline(args) -> None:
    """Whisper tiny.en's own WER on the held-out real speech: transformers greedy decoding
    through tools/whisper_ct2.py reference (no timestamps), scored like the audio LLM."""
    import subprocess
    EVAL_DIR.mkdir(parents=True, exist_ok=True)
    out = EVAL_DIR / "heldout_real_whisper.tsv"
    subprocess.run([sys.executable, str(ROOT / "tools/whisper_ct2.py"), "--threads", str(THREADS),
                    "reference", "--list", str(LISTS / "heldout_real.tsv"), "--out", str(out),
                    "--no-fixtures"], check=True, cwd=ROOT)
    hyp = dict(line.split("\t", 1) for line in out.read_text().splitlines() if "\t" in line)
    res = {}
    held = read_list("heldout_real.tsv")
    for name, rows in (("heldout_real", held),
                       ("heldout_asterisk", [r for r in held if "librivox" not in r[0]]),
                       ("heldout_librivox", [r for r in held if "librivox" in r[0]])):
        e = sum(edits(normalise(t).split(), normalise(hyp.get(p, "")).split()) for p, t in rows)
        w = sum(len(normalise(t).split()) for _, t in rows)
        res[name] = {"wer": 100.0 * e / w, "errors": e, "words": w, "n": len(rows)}
        log(f"Whisper tiny.en {name}: WER {100.0 * e / w:.2f}% ({e}/{w}, {len(rows)} utterances)")
    (EVAL_DIR / "baseline.json").write_text(json.dumps(res, indent=2) + "\n")
