#!/usr/bin/env python3
"""Distils a SpeechBrain-layout ECAPA-TDNN student from CAM++ (teacher) and exports it to ONNX.

    distil_ecapa.py all    [--channels 256] [--steps 2000] [--seed 20261121]
    distil_ecapa.py crops | train | eval | export      (the stages of `all`, resumable)
    distil_ecapa.py card                               (model card from the last export)

Knowledge distillation: the student learns to reproduce the teacher's L2-normalised
embeddings (loss 1 - cosine), so it needs audio, not speaker labels. Everything comes from
the registries: the Asterisk prompt corpus (tools/setup_speech.sh) and the flite, klettres and
pocketsphinx speech of tools/setup_distil_data.sh.

Held-out evaluation the student never hears (both lists are subsets of
fixtures/trials/trials.txt, written to fixtures/trials/ by this script):
  (a) distil_known.txt  - trials between the 5 training speakers, on their trial utterances
                          (every utterance of trials.txt is left out of training);
  (b) distil_unseen.txt - every trial with a side from the 2 speakers left out of training
                          entirely (HELD_OUT below).

Front end: CAM++'s (fixtures/models/campplus.json: 80-dim Kaldi fbank, povey window,
utterance mean normalisation), computed with kaldi-native-fbank as tools/reference_eval.py.
Crops: 1-3 s (2-3 s where the utterance is long enough), in 5 length buckets, each
augmented once, offline: gain, speed 0.9/1.1, telephone band (300-3400 Hz, 8 kHz round trip),
additive white/brown noise; the teacher's embeddings of the crops are computed once and cached.

Student: speechbrain 1.1.2 `ECAPA_TDNN(80, lin_neurons=192, channels=[C,C,C,C,3C],
kernel_sizes=[5,3,3,3,1], dilations=[1,2,3,4,1], attention_channels=128)` - SpeechBrain's own
module, so ONNX node scopes are SpeechBrain's (`/blocks.0/`, `/blocks.1-3/`, `/mfa/`, `/asp/`,
`/asp_bn/`, `/fc/`). AdamW, linear warm-up then cosine decay, fixed seed (CPU, 2 threads:
runs are reproducible on one machine).

Run with the torch venv (torch 2.11.0, speechbrain 1.1.2 --no-deps, hyperpyyaml,
kaldi-native-fbank, onnx, onnxruntime; see ../shared/FACTS.md).
"""
import argparse
import json
import math
import os
import sys
import time
import wave

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_campplus import ROOT, check_parity, export_onnx, op_counts, write_json  # noqa: E402
from export_ecapa import CHECK_SHAPES, length_to_mask_broadcast  # noqa: E402
from reference_eval import fbank_options, features, metrics, read_trials  # noqa: E402

RATE = 16000
HELD_OUT = ("armelle", "ivrvoice")
BUCKETS = [16000, 24000, 32000, 40000, 48000]  # crop lengths in samples (1.0 ... 3.0 s)
ASTERISK_CROPS = 8  # crops per Asterisk training utterance (the in-domain speech)
EXTRA_CROPS = 2  # per flite/klettres utterance; LibriVox clips get one per 2 s
CACHE = os.path.join(ROOT, ".cache", "distil")
SPEECH = os.path.join(ROOT, ".cache", "speech")
TRIALS = os.path.join(ROOT, "fixtures", "trials")
MODELS = os.path.join(ROOT, "fixtures", "models")
TEACHER = os.path.join(MODELS, "campplus.json")
STEM = "ecapa_distil"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != RATE:
            raise SystemExit(f"error: {path}: expected 16 kHz 16-bit mono PCM")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def teacher_cfg():
    with open(TEACHER) as f:
        return json.load(f)


# ---------------------------------------------------------------- trial lists and training set
def speaker(rel):
    return rel.split("/")[0]


def write_trial_lists():
    trials = read_trials(os.path.join(TRIALS, "trials.txt"))
    known, unseen = [], []
    for tgt, a, b, xl in trials:
        line = f"{int(tgt)} {a} {b}" + (" xlang" if xl else "")
        if speaker(a) in HELD_OUT or speaker(b) in HELD_OUT:
            unseen.append(line)
        else:
            known.append(line)
    for name, lines in (("distil_known.txt", known), ("distil_unseen.txt", unseen)):
        tmp = os.path.join(TRIALS, name + ".tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, os.path.join(TRIALS, name))
    used = {p for _, a, b, _ in trials for p in (a, b)}
    return used


def training_files(used):
    """(path, source) of every training utterance: Asterisk prompts of the 5 training speakers
    that are not trial utterances, and the distillation corpus."""
    files = []
    with open(os.path.join(SPEECH, "MANIFEST.tsv")) as f:
        next(f)
        for line in f:
            rel = line.split("\t")[0]
            if speaker(rel) in HELD_OUT or rel in used:
                continue
            files.append((os.path.join(SPEECH, rel), "asterisk-" + speaker(rel)))
    with open(os.path.join(CACHE, "audio", "MANIFEST.tsv")) as f:
        next(f)
        for line in f:
            rel, src, _ = line.rstrip("\n").split("\t")
            files.append((os.path.join(CACHE, "audio", rel), src))
    return files


# ---------------------------------------------------------------- augmentation and crops
def augment(x, rng):
    """One random augmentation of float samples x (16 kHz); returns float32."""
    t = torch.from_numpy(x.astype(np.float32))
    speed = rng.choice([0.9, 1.0, 1.1], p=[0.2, 0.6, 0.2])
    if speed != 1.0:  # play faster/slower: resample by 10/9 or 10/11 and call it 16 kHz
        t = AF.resample(t, int(round(10 * speed)), 10)
    if rng.random() < 0.25:  # telephone: 8 kHz round trip and 300-3400 Hz band
        t = AF.resample(AF.resample(t, RATE, 8000), 8000, RATE)
        t = AF.highpass_biquad(t, RATE, 300.0)
        t = AF.lowpass_biquad(t, RATE, 3400.0)
    x = t.numpy().astype(np.float64)
    if rng.random() < 0.5:
        snr = rng.uniform(5.0, 30.0)
        noise = rng.standard_normal(len(x))
        if rng.random() < 0.5:  # brown noise
            noise = np.cumsum(noise)
            c = np.concatenate([[0.0], np.cumsum(noise)])
            k = np.arange(len(noise))
            lo, hi = np.maximum(k - 400, 0), np.minimum(k + 401, len(noise))
            noise -= (c[hi] - c[lo]) / (hi - lo)  # minus its 50 ms moving mean (no DC drift)
        p_sig = np.mean(x ** 2) + 1e-12
        noise *= math.sqrt(p_sig / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr / 10))
        x = x + noise
    x = x * 10 ** (rng.uniform(-10.0, 6.0) / 20)
    return np.clip(x, -1.0, 1.0)


def stage_crops(args):
    out = os.path.join(CACHE, f"crops-s{args.seed}.npz")
    if os.path.exists(out):
        log(f"crops: cached at {out}")
        return out
    cfg = teacher_cfg()
    opts = fbank_options(cfg)
    used = write_trial_lists()
    files = training_files(used)
    rng = np.random.default_rng(args.seed)
    feats = {b: [] for b in BUCKETS}
    srcs = {b: [] for b in BUCKETS}
    t0 = time.time()
    for i, (path, src) in enumerate(files):
        x = read_wav(path)
        n = ASTERISK_CROPS if src.startswith("asterisk") else EXTRA_CROPS
        if src == "pocketsphinx-librivox":
            n = max(1, int(len(x) / RATE / 2))
        for _ in range(n):
            # crop a little more than needed (speed 1.1 shortens it), augment, then cut
            if len(x) < BUCKETS[0] * 1.12:
                continue
            longest = max(b for b in BUCKETS if b * 1.12 <= len(x))
            choices = [b for b in BUCKETS if b >= min(32000, longest) and b <= longest]
            L = int(rng.choice(choices))
            seg = int(min(len(x), L * 1.12))
            start = int(rng.integers(0, len(x) - seg + 1))
            y = augment(x[start:start + seg], rng)
            f = features(y[:L], cfg, opts)
            feats[L].append(f.astype(np.float16))
            srcs[L].append(src)
        if (i + 1) % 500 == 0:
            log(f"crops: {i + 1}/{len(files)} files, {sum(map(len, feats.values()))} crops, "
                f"{time.time() - t0:.0f} s")
    sess = ort.InferenceSession(os.path.join(MODELS, cfg["onnx"]), providers=["CPUExecutionProvider"])
    arrays = {}
    for b in BUCKETS:
        if not feats[b]:
            continue
        fb = np.stack(feats[b])
        emb = np.concatenate([sess.run(["embedding"], {"feats": fb[i:i + 64].astype(np.float32)})[0]
                              for i in range(0, len(fb), 64)])
        arrays[f"feats_{b}"] = fb
        arrays[f"teacher_{b}"] = emb.astype(np.float32)
        arrays[f"source_{b}"] = np.array(srcs[b])
    tmp = out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    counts = {b: len(feats[b]) for b in BUCKETS}
    log(f"crops: {sum(counts.values())} crops from {len(files)} files {counts}, "
        f"{time.time() - t0:.0f} s (teacher included)")
    return out


# ---------------------------------------------------------------- model and training
def make_student(channels):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    class ECAPA(ECAPA_TDNN):
        """SpeechBrain's ECAPA_TDNN with the [B, 1, 192] output squeezed to [B, 192]."""

        def forward(self, x):
            return super().forward(x).squeeze(1)

    c = channels
    return ECAPA(80, lin_neurons=192, channels=[c, c, c, c, 3 * c], kernel_sizes=[5, 3, 3, 3, 1],
                 dilations=[1, 2, 3, 4, 1], attention_channels=128)


def ckpt_path(args):
    return os.path.join(CACHE, f"student-c{args.channels}-s{args.seed}-n{args.steps}.pt")


def lr_at(step, steps, peak, warmup=100):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def stage_train(args, crops):
    path = ckpt_path(args)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = make_student(args.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed + 1)
    state = {"step": 0, "seconds": 0.0, "log": []}
    if os.path.exists(path):
        ck = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
        log(f"train: resumed at step {state['step']}")
    if state["step"] >= args.steps:
        return model, state
    data = np.load(crops)
    buckets = [b for b in BUCKETS if f"feats_{b}" in data]
    feats = {b: torch.from_numpy(data[f"feats_{b}"].astype(np.float32)) for b in buckets}
    teach = {b: F.normalize(torch.from_numpy(data[f"teacher_{b}"]), dim=1) for b in buckets}
    sizes = np.array([len(feats[b]) for b in buckets], dtype=np.float64)
    log(f"train: C={args.channels}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{int(sizes.sum())} crops, {args.steps} steps of {args.batch}")
    model.train()
    t_start, t_last, loss_acc = time.time() - state["seconds"], time.time(), []
    while state["step"] < args.steps:
        step = state["step"]
        b = buckets[rng.choice(len(buckets), p=sizes / sizes.sum())]
        idx = torch.from_numpy(rng.choice(len(feats[b]), size=args.batch, replace=False))
        x, t = feats[b][idx], teach[b][idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        e = model(x)
        loss = (1.0 - F.cosine_similarity(e, t, dim=1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_acc.append(float(loss))
        state["step"] = step + 1
        if state["step"] % 50 == 0 or state["step"] == args.steps:
            now = time.time()
            state["seconds"] = now - t_start
            state["log"].append((state["step"], float(np.mean(loss_acc)), state["seconds"]))
            log(f"train: step {state['step']}/{args.steps} loss {np.mean(loss_acc):.4f} "
                f"lr {lr_at(step, args.steps, args.lr):.2e} {50 * args.batch / (now - t_last):.1f} samples/s "
                f"elapsed {state['seconds'] / 60:.1f} min")
            loss_acc, t_last = [], now
        if state["step"] % 200 == 0 or state["step"] == args.steps:
            tmp = path + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(), "state": state}, tmp)
            os.replace(tmp, path)
    return model, state


# ---------------------------------------------------------------- evaluation
def trial_features():
    out = os.path.join(CACHE, "trial-feats.npz")
    lists = {k: read_trials(os.path.join(TRIALS, f"distil_{k}.txt")) for k in ("known", "unseen")}
    utts = sorted({p for tr in lists.values() for _, a, b, _ in tr for p in (a, b)})
    if os.path.exists(out):
        data = np.load(out, allow_pickle=False)
        if list(data["names"]) == utts:
            return lists, {u: data[f"f{i}"] for i, u in enumerate(utts)}
    cfg = teacher_cfg()
    opts = fbank_options(cfg)
    feats = {u: features(read_wav(os.path.join(SPEECH, u)).astype(np.float64), cfg, opts) for u in utts}
    np.savez(out + ".tmp.npz", names=np.array(utts), **{f"f{i}": feats[u] for i, u in enumerate(utts)})
    os.replace(out + ".tmp.npz", out)
    return lists, feats


def score(lists, emb):
    res = {}
    for k, tr in lists.items():
        tar = [float(np.dot(emb[a], emb[b])) for t, a, b, _ in tr if t]
        non = [float(np.dot(emb[a], emb[b])) for t, a, b, _ in tr if not t]
        e, e_thr, d, _ = metrics(tar, non)
        res[k] = {"eer_percent": round(100 * e, 3), "min_dcf": round(d, 4), "eer_threshold": round(e_thr, 4),
                  "target_trials": len(tar), "nontarget_trials": len(non)}
    return res


def normalise(v):
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return v / np.linalg.norm(v)


def stage_eval(args, model):
    lists, feats = trial_features()
    cfg = teacher_cfg()
    sess = ort.InferenceSession(os.path.join(MODELS, cfg["onnx"]), providers=["CPUExecutionProvider"])
    teacher = {u: normalise(sess.run(["embedding"], {"feats": f[None].astype(np.float32)})[0])
               for u, f in feats.items()}
    model.eval()
    with torch.no_grad():
        student = {u: normalise(model(torch.from_numpy(f[None].astype(np.float32))).numpy()) for u, f in feats.items()}
    cos = [float(np.dot(teacher[u], student[u])) for u in feats]
    res = {"teacher": score(lists, teacher), "student": score(lists, student),
           "student_teacher_cosine_mean": round(float(np.mean(cos)), 4)}
    for who in ("teacher", "student"):
        for k in ("known", "unseen"):
            r = res[who][k]
            log(f"eval: {who:7s} list ({'a' if k == 'known' else 'b'}) {k:6s}: EER {r['eer_percent']:.3f}% "
                f"minDCF {r['min_dcf']:.4f} ({r['target_trials']} target / {r['nontarget_trials']} nontarget)")
    log(f"eval: mean cosine student-teacher over {len(cos)} trial utterances: {np.mean(cos):.4f}")
    return res


# ---------------------------------------------------------------- export
def stage_export(args, model, state, res):
    import speechbrain.lobes.models.ECAPA_TDNN as sb_ecapa
    model.eval()
    onnx_path = os.path.join(MODELS, STEM + ".onnx")
    original = sb_ecapa.length_to_mask
    sb_ecapa.length_to_mask = length_to_mask_broadcast  # see tools/export_ecapa.py
    try:
        m = export_onnx(model, onnx_path, torch.randn(2, 200, 80))
    finally:
        sb_ecapa.length_to_mask = original
    worst, _ = check_parity(model, onnx_path, CHECK_SHAPES)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = teacher_cfg()
    known = res["student"]["known"]
    c = args.channels
    write_json(os.path.join(MODELS, STEM + ".json"), {
        "name": f"ecapa_tdnn_c{c}_distil_campplus",
        "task": "speaker-embedding",
        "onnx": STEM + ".onnx",
        "input": "feats",
        "output": "embedding",
        "embedding_dim": 192,
        "threshold": known["eer_threshold"],
        "source": f"tools/distil_ecapa.py all --channels {c} --steps {args.steps} --seed {args.seed}: "
                  "SpeechBrain ECAPA_TDNN student distilled from CAM++ (fixtures/models/campplus.onnx); "
                  "model card fixtures/models/ecapa_distil.md",
        "notes": f"channels [{c},{c},{c},{c},{3 * c}], kernels [5,3,3,3,1], dilations [1,2,3,4,1], attention 128; "
                 f"{n_params / 1e6:.2f} M parameters; ONNX opset 17 (TorchScript exporter, torch {torch.__version__}), "
                 f"ORT vs torch min cosine {worst:.8f}. Threshold = EER operating point on "
                 "fixtures/trials/distil_known.txt. Same front end as CAM++.",
        "fbank": cfg["fbank"],
    })
    size_mb = os.path.getsize(onnx_path) / 1e6
    report = {"channels": c, "parameters": n_params, "onnx_mb": round(size_mb, 2), "steps": args.steps,
              "batch": args.batch, "seed": args.seed, "train_minutes": round(state["seconds"] / 60, 1),
              "ops": op_counts(m), "parity_min_cosine": worst, "eval": res,
              "loss_log": state["log"], "torch": torch.__version__, "threads": args.threads}
    write_json(report_path(args), report)
    log(f"export: {onnx_path} ({size_mb:.1f} MB), parity min cosine {worst:.8f}")
    write_card(args, report)
    return report


def report_path(args):
    return os.path.join(CACHE, f"report-c{args.channels}-s{args.seed}-n{args.steps}.json")


def write_card(args, report):
    """fixtures/models/ecapa_distil.eval.json (this script's evaluation, for tests) and the
    model card fixtures/models/ecapa_distil.md."""
    ev = report["eval"]
    write_json(os.path.join(MODELS, STEM + ".eval.json"), {
        "note": "tools/distil_ecapa.py's own evaluation (torch student, kaldi-native-fbank front end)",
        "trials": {"known": "fixtures/trials/distil_known.txt", "unseen": "fixtures/trials/distil_unseen.txt"},
        **ev,
    })
    data = np.load(os.path.join(CACHE, f"crops-s{args.seed}.npz"))
    sources = {}
    for k in data.files:
        if k.startswith("source_"):
            for src in data[k]:
                key = str(src).split("-")[0]
                sources[key] = sources.get(key, 0) + 1
    c = report["channels"]
    t, st = ev["teacher"], ev["student"]
    row = lambda who, r: (f"| {who} | {r['known']['eer_percent']:.3f} | {r['known']['min_dcf']:.4f} | "
                          f"{r['unseen']['eer_percent']:.3f} | {r['unseen']['min_dcf']:.4f} |")
    ratio = st["known"]["eer_percent"] / max(t["known"]["eer_percent"], 1e-9)
    lines = [
        f"# ecapa_distil: SpeechBrain ECAPA-TDNN (C={c}) distilled from CAM++",
        "",
        "Made by `tools/distil_ecapa.py all --channels {c} --steps {n} --seed {s}` (data: "
        "`tools/setup_speech.sh`, `tools/setup_distil_data.sh`).".format(c=c, n=report["steps"], s=report["seed"]),
        "",
        "## Model",
        f"- speechbrain 1.1.2 `ECAPA_TDNN`: channels [{c},{c},{c},{c},{3 * c}], kernels [5,3,3,3,1], "
        f"dilations [1,2,3,4,1], attention 128, 192-dim output; {report['parameters'] / 1e6:.2f} M parameters, "
        f"ONNX {report['onnx_mb']:.1f} MB (opset 17, input `feats` [batch, frames, 80], output `embedding` [batch, 192], "
        f"dynamic batch and frames); ORT vs torch min cosine {report['parity_min_cosine']:.8f} over (batch, frames) "
        f"{CHECK_SHAPES}.",
        "- Front end: CAM++'s (80-dim Kaldi fbank, povey window, utterance mean normalisation; see `ecapa_distil.json`).",
        "- Node scopes are SpeechBrain's: `preset:ecapa-speechbrain` groups stem, se_res2block_1..3, mfa, asp, fc.",
        "",
        "## Training",
        "- Teacher: CAM++ (`campplus.onnx`); loss 1 - cosine between the student's and the teacher's embeddings.",
        f"- Data: {sum(sources.values())} augmented crops of 1-3 s ({', '.join(f'{k} {v}' for k, v in sorted(sources.items()))}): "
        "Asterisk prompts of allison, june, carlo, menardi, july except every utterance of fixtures/trials/trials.txt; "
        "flite voices kal, kal16, awb, rms, slt on generated sentences at random rate and pitch; klettres-data letters and "
        "syllables joined per language; pocketsphinx-testdata clips. Armelle and the Russian IVR voice are never heard.",
        "- Augmentation (one draw per crop, offline; the teacher sees the same audio): gain -10..+6 dB, speed 0.9/1.1 "
        "(p 0.2 each), telephone band 300-3400 Hz via 8 kHz (p 0.25), white or brown noise at 5-30 dB SNR (p 0.5).",
        f"- {report['steps']} steps of {report['batch']} crops (one length bucket per batch), AdamW (peak lr 2e-3, "
        f"weight decay 1e-4), 100-step warm-up then cosine decay; seed {report['seed']}; torch {report['torch']} on "
        f"{report['threads']} CPU threads; training wall time {report['train_minutes']} min (2-core CPU, no GPU).",
        f"- Final training loss (mean 1 - cosine over the last 50 steps): {report['loss_log'][-1][1]:.4f}.",
        "",
        "## Evaluation (utterances the student never heard)",
        "",
        "| model | EER % (a) known speakers | minDCF (a) | EER % (b) unseen speakers | minDCF (b) |",
        "|---|---:|---:|---:|---:|",
        row("CAM++ teacher", t),
        row(f"ECAPA-TDNN C={c} student", st),
        "",
        f"(a) `fixtures/trials/distil_known.txt`: {st['known']['target_trials']} target / "
        f"{st['known']['nontarget_trials']} non-target trials between the 5 training speakers, on held-out utterances. "
        f"(b) `fixtures/trials/distil_unseen.txt`: {st['unseen']['target_trials']} target / "
        f"{st['unseen']['nontarget_trials']} non-target trials with a side from the 2 speakers left out of training. "
        f"Student/teacher EER ratio on (a): {ratio:.2f}. Mean student-teacher cosine over the trial utterances: "
        f"{ev['student_teacher_cosine_mean']:.4f}. minDCF: P_target 0.01, normalised.",
        "",
    ]
    if c < 512:
        lines += ["Width: SpeechBrain's default C=512 was the target; no GPU was available. Measured on 2026-11-21 "
                  "on the 2-core CPU this card was made on (same crops, batch 32): C=512 trained at 13.6 crops/s, "
                  "C=256 at 41-45, so C=256 was the widest width that fitted the session's time.", ""]
    tmp = os.path.join(MODELS, STEM + ".md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, os.path.join(MODELS, STEM + ".md"))
    log(f"card: {os.path.join(MODELS, STEM + '.md')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["crops", "train", "eval", "export", "all", "card"])
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    if args.stage == "card":  # the model card from the last export's report
        with open(report_path(args)) as f:
            write_card(args, json.load(f))
        return
    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    crops = stage_crops(args)
    if args.stage == "crops":
        return
    model, state = stage_train(args, crops)
    if args.stage == "train":
        return
    res = stage_eval(args, model)
    if args.stage in ("export", "all"):
        stage_export(args, model, state, res)


if __name__ == "__main__":
    main()
