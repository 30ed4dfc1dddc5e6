"""The check-encoder, precompute, train and bench subcommands of tools/train_projector.py
(encoder-state cache, batch schedule, learning rate, checkpoints, the TSV log).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np

from whisper_ct2 import feature_extractor, log_mel, read_wav
from projector_common import (ASR_SHARE, ENC_DIR, EVAL_DIR, MAX_NEW_ASR, MAX_NEW_QA, ROOT, SEED,
                              STRIDE, THREADS, WHISPER_HF, WHISPER_ONNX, die, enc_file,
                              eval_subsets, kept_frames, log, n_tokens_of, ort_session, read_list)
from projector_model import FrozenLlama, Prompts, build_config, make_ctc_head, make_projector
# cmd_train rebinds these two (global) for --run-dir
from projector_common import CKPT_DIR, LOG_TSV  # noqa: F401
from projector_data import batch_loss, ctc_greedy_wer, generate, load_states, make_items, score


def cmd_precompute(args) -> None:
    """Encoder states of every listed clip (held-out first), float16, kept frames only."""
    ENC_DIR.mkdir(parents=True, exist_ok=True)
    asr_sub, _ = eval_subsets()
    paths = [r[0] for r in asr_sub]
    for name in ("train.tsv", "val.tsv", "heldout_real.tsv"):
        paths += [r[0] for r in read_list(name)]
    seen, todo = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            if not enc_file(p).exists():
                todo.append(p)
    log(f"precompute: {len(seen)} clips, {len(todo)} to do")
    fe = feature_extractor(80)
    enc = ort_session(WHISPER_ONNX / "encoder.onnx", THREADS)
    t0 = time.time()
    for i, p in enumerate(todo):
        s = read_wav(ROOT / p)
        if len(s) > 480000:
            die(f"{p}: over 30 s")
        st = enc.run(None, {"input_features": log_mel(fe, s)})[0][0, :kept_frames(len(s))]
        out = enc_file(p)
        tmp = out.with_name(out.stem + ".tmp.npy")
        np.save(tmp, st.astype(np.float16))
        os.replace(tmp, out)
        if (i + 1) % 100 == 0:
            el = time.time() - t0
            log(f"{i + 1}/{len(todo)} ({el / (i + 1):.2f} s per clip, "
                f"{el / (i + 1) * (len(todo) - i - 1) / 60:.1f} min left)")
    log(f"precompute done in {(time.time() - t0) / 60:.1f} min")


def cmd_check_encoder(args) -> None:
    """The transformers Whisper encoder (weights of .cache/whisper/tiny.en/hf, the ones exported
    to encoder.onnx) against the ONNX encoder on three held-out clips."""
    import torch
    from transformers import WhisperModel
    torch.set_num_threads(THREADS)
    model = WhisperModel.from_pretrained(WHISPER_HF, dtype=torch.float32).encoder.eval()
    fe = feature_extractor(80)
    enc = ort_session(WHISPER_ONNX / "encoder.onnx", THREADS)
    worst = 0.0
    for p, _ in read_list("heldout_real.tsv")[:2] + read_list("heldout_real.tsv")[-1:]:
        s = read_wav(ROOT / p)
        f = log_mel(fe, s)
        a = enc.run(None, {"input_features": f})[0]
        with torch.no_grad():
            b = model(torch.from_numpy(f)).last_hidden_state.numpy()
        k = kept_frames(len(s))
        print(f"{p}: {len(s)} samples, {k} kept frames; |torch - onnx| max {np.abs(a - b).max():.2e}"
              f" (kept {np.abs(a - b)[0, :k].max():.2e}), mean |state| {np.abs(a).mean():.3f}; "
              f"float16 cache max error {np.abs(a[0, :k] - a[0, :k].astype(np.float16)).max():.2e}")
        worst = max(worst, float(np.abs(a - b).max()))
    EVAL_DIR.mkdir(parents=True, exist_ok=True)
    (EVAL_DIR / "encoder_check.json").write_text(json.dumps({"clips": 3, "max_abs": worst}) + "\n")


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------

def schedule(asr: list, qa: list, steps: int, batch: int, seed: int, lengths: dict) -> list:
    """Deterministic list of batches (lists of (kind, index)): per epoch every transcription
    item once and a fresh sample of questions, length-bucketed, batch order shuffled."""
    rng = random.Random(seed)
    out = []
    while len(out) < steps:
        a = list(range(len(asr)))
        rng.shuffle(a)
        nq = min(len(qa), int(len(a) * (1 - ASR_SHARE) / ASR_SHARE))
        q = rng.sample(range(len(qa)), nq)
        ep = []
        for kind, idx, items in (("asr", a, asr), ("qa", q, qa)):
            for c in range(0, len(idx), 32 * batch):
                grp = sorted(idx[c:c + 32 * batch], key=lambda i: lengths[items[i]["path"]])
                ep += [[(kind, i) for i in grp[k:k + batch]] for k in range(0, len(grp), batch)]
        rng.shuffle(ep)
        out += ep
    return out[:steps]


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def setup(args, need_train: bool = True):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    cfg = build_config()
    llm = FrozenLlama()
    prompts = Prompts(cfg, llm)
    texts = {p: t for name in ("train.tsv", "val.tsv", "heldout_real.tsv")
             for p, t in read_list(name)}
    d = dict(cfg=cfg, llm=llm, prompts=prompts, texts=texts)
    if need_train:
        d["train"] = make_items(prompts, read_list("train.tsv"), read_list("train_qa.tsv"), texts)
        d["val"] = make_items(prompts, read_list("val.tsv"), read_list("val_qa.tsv"), texts)
    easr, eqa = eval_subsets()
    d["eval"] = make_items(prompts, easr, eqa, texts)
    return d


def save_ckpt(path: Path, state: dict) -> None:
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def cmd_train(args) -> None:
    """Phase 1 (--ctc-steps): CTC warm-up, projector + CTC head only (no LLM pass, cheap).
    Phase 2 (--steps): cross-entropy through the frozen LLM + CTC_WEIGHT * CTC. One step counter
    over both phases; checkpoints, log lines and evaluations as the options say."""
    import torch
    global LOG_TSV, CKPT_DIR
    d = setup(args)
    llm, prompts = d["llm"], d["prompts"]
    asr, qa = d["train"]
    vasr, vqa = d["val"]
    easr, eqa = d["eval"]
    if args.run_dir:  # a pilot or smoke run: its own log and checkpoints
        LOG_TSV, CKPT_DIR = Path(args.run_dir) / "train_log.tsv", Path(args.run_dir) / "ckpt"
    LOG_TSV.parent.mkdir(parents=True, exist_ok=True)
    if args.smoke:  # a quick check of the loop on whatever is cached
        have = lambda xs: [it for it in xs if enc_file(it["path"]).exists()]  # noqa: E731
        asr, qa, vasr, vqa, easr, eqa = (have(x)[:64] for x in (asr, qa, vasr, vqa, easr, eqa))
    paths = [it["path"] for it in asr + qa + vasr + vqa + easr + eqa]
    t0 = time.time()
    states = load_states(paths)
    lengths = {p: s.shape[0] for p, s in states.items()}
    vocab = sorted({t for it in asr for t in it["ctc"]})
    ctc_map = {t: i + 1 for i, t in enumerate(vocab)}
    for it in qa + vasr + vqa:  # transcripts outside the training vocabulary: drop those tokens
        it["ctc"] = [t for t in it["ctc"] if t in ctc_map]
    max_frames = args.max_audio_tokens * STRIDE
    asr_l = [it for it in asr if lengths[it["path"]] <= max_frames]
    qa_l = [it for it in qa if lengths[it["path"]] <= max_frames]
    log(f"{len(states)} cached clips loaded in {time.time() - t0:.0f} s; train {len(asr)} asr + "
        f"{len(qa)} qa items ({len(asr_l)} + {len(qa_l)} with <= {args.max_audio_tokens} audio "
        f"tokens for the LLM phase); val {len(vasr)} + {len(vqa)}; eval subset {len(easr)} + "
        f"{len(eqa)}; CTC vocabulary {len(vocab)} tokens")
    proj = make_projector()
    ctc = make_ctc_head(vocab, llm)
    params = list(proj.parameters()) + list(ctc.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    total = args.ctc_steps + args.steps
    sched = schedule(asr, [], args.ctc_steps, args.ctc_batch, SEED + 10, lengths) + \
        schedule(asr_l, qa_l, args.steps, args.batch, SEED, lengths)
    start, wall0 = 0, 0.0
    base_steps = args.steps  # the LLM-phase length of the first run (its cosine)
    ck = CKPT_DIR / "last.pt"
    if args.resume:
        if not ck.exists():
            die(f"--resume: {ck} does not exist")
        st = torch.load(ck, weights_only=False)
        for k in ("batch", "ctc_steps", "ctc_batch", "max_audio_tokens"):
            if st["args"][k] != getattr(args, k):
                die(f"--resume with a different --{k.replace('_', '-')} than the checkpoint")
        base_steps = st["args"].get("base_steps") or st["args"]["steps"]
        if args.steps < st["args"]["steps"]:
            die("--resume with fewer --steps than the checkpoint's run")
        if args.steps > st["args"]["steps"]:
            # extending a finished run: the batch schedule's prefix is the same (same seed,
            # epochs generated in order); the learning rate restarts at extend_lr_scale * lr
            # and decays by a cosine over the added steps
            if schedule(asr_l, qa_l, base_steps, args.batch, SEED, lengths) != \
                    sched[args.ctc_steps:args.ctc_steps + base_steps]:
                die("the extended batch schedule does not start with the trained one")
            log(f"extending the LLM phase from {st['args']['steps']} to {args.steps} steps (lr "
                f"restart at {args.extend_lr_scale} x {args.lr})")
        proj.load_state_dict(st["proj"])
        ctc.load_state_dict(st["ctc"])
        opt.load_state_dict(st["opt"])
        start, wall0 = st["step"], st["wall"]
        log(f"resumed at step {start} ({wall0 / 60:.1f} min trained)")
    elif LOG_TSV.exists() and not args.force:
        die(f"{LOG_TSV} exists: use --resume, or --force to start over")
    if start == 0:
        LOG_TSV.write_text("step\tphase\twall_s\tlr\tloss\tce\tctc\tval_ctc_wer\tval_ce\t"
                           "heldout_wer\theldout_qa_acc\n")
    t_start = time.time()
    acc = [0.0, 0.0, 0.0, 0]

    def wall() -> float:
        return wall0 + time.time() - t_start

    def phase(step: int) -> str:
        return "ctc" if step < args.ctc_steps else "llm"

    def evaluate(step: int, full: bool) -> None:
        proj.eval()
        te = time.time()
        vw = ctc_greedy_wer(prompts, proj, ctc, vocab, states, vasr)
        vce, wer, qacc, ex = "", "", "", ""
        if full:
            with torch.no_grad():
                v = []
                for items in (vasr[:48], vqa[:16]):
                    for c in range(0, len(items), 16):
                        v.append(float(batch_loss(llm, prompts, proj, None, None, states,
                                                  items[c:c + 16])[0]))
                ra = score(prompts, easr, generate(llm, prompts, proj, states, easr, MAX_NEW_ASR))
                rq = score(prompts, eqa, generate(llm, prompts, proj, states, eqa, MAX_NEW_QA))
            vce, wer, qacc = f"{np.mean(v):.4f}", f"{ra['wer']:.2f}", f"{rq['acc']:.1f}"
            ex = f"; e.g. {easr[5]['answer']!r} -> {ra['hyps'][5]!r}"
        proj.train()
        with open(LOG_TSV, "a") as f:
            f.write(f"{step}\t{phase(max(0, step - 1))}\t{wall():.1f}\t\t\t\t\t{vw:.2f}\t{vce}\t"
                    f"{wer}\t{qacc}\n")
        log(f"eval @ {step}: val CTC-greedy WER {vw:.1f}%"
            + (f"; val CE {vce}; held-out subset WER {wer}%, QA {qacc}%" if full else "")
            + f" ({time.time() - te:.0f} s){ex}")

    proj.train()
    if start == 0:
        evaluate(0, True)
    done = start
    for step in range(start, total):
        ph = phase(step)
        if ph == "ctc":
            lr = lr_at(step, args.ctc_steps, args.ctc_lr, args.warmup)
        else:
            k = step - args.ctc_steps
            if k < base_steps:
                lr = lr_at(k, base_steps, args.lr, args.warmup)
            else:
                lr = lr_at(k - base_steps, args.steps - base_steps,
                           args.lr * args.extend_lr_scale, 1)
        for g in opt.param_groups:
            g["lr"] = lr
        items = [(asr if ph == "ctc" else asr_l if k == "asr" else qa_l)[i] for k, i in sched[step]]
        ce, cl, _ = batch_loss(llm, prompts, proj, ctc, ctc_map, states, items, ph == "llm")
        loss = ce + (args.ctc_weight if ph == "llm" else 1.0) * cl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        acc = [acc[0] + float(loss), acc[1] + float(ce), acc[2] + float(cl), acc[3] + 1]
        done = step + 1
        every = args.log_every if ph == "llm" else 10 * args.log_every
        if done % every == 0:
            n = acc[3]
            with open(LOG_TSV, "a") as f:
                f.write(f"{done}\t{ph}\t{wall():.1f}\t{lr:.2e}\t{acc[0] / n:.4f}\t{acc[1] / n:.4f}"
                        f"\t{acc[2] / n:.4f}\t\t\t\t\n")
            log(f"step {done}/{total} ({ph}): loss {acc[0] / n:.3f} (CE {acc[1] / n:.3f}, CTC "
                f"{acc[2] / n:.3f}), lr {lr:.2e}, {wall() / 60:.1f} min")
            acc = [0.0, 0.0, 0.0, 0]
        stop = wall() > args.max_wall_min * 60
        if ph == "ctc" and (done % args.ctc_eval_every == 0 or done == args.ctc_steps):
            evaluate(done, done == args.ctc_steps)
        elif ph == "llm" and ((done - args.ctc_steps) % args.eval_every == 0 or done == total
                              or stop):
            evaluate(done, True)
        if done % args.ckpt_every == 0 or done == total or done == args.ctc_steps or stop:
            st = dict(proj=proj.state_dict(), ctc=ctc.state_dict(), opt=opt.state_dict(),
                      step=done, wall=wall(), args=dict(vars(args), base_steps=base_steps))
            save_ckpt(ck, st)
            save_ckpt(CKPT_DIR / f"step{done:05d}.pt", dict(proj=proj.state_dict(), step=done,
                                                            wall=wall(), args=st["args"]))
        if stop:
            log(f"stopping at step {done}: wall-time limit {args.max_wall_min} min reached")
            break
    log(f"training done: {done} steps, {wall() / 60:.1f} min")


def cmd_bench(args) -> None:
    """Checks the layer-by-layer LLM against transformers' forward, then times training steps
    (batch --batch) on cached clips, to size the main run."""
    import torch
    d = setup(args)
    llm, prompts = d["llm"], d["prompts"]
    ids = prompts.enc("<|im_start|>user\nHello there, how are you?<|im_end|>\n")
    x = llm.E[torch.tensor(ids)][None]
    n = len(ids)
    with torch.no_grad():
        ref = llm.m(inputs_embeds=x).logits[0]
        h, _ = llm.run(x, torch.arange(n)[None], None,
                       torch.ones(n, n, dtype=torch.bool).tril()[None, None])
        # the same through the cached-prefix path: first 5 tokens as past
        _, pres = llm.run(x[:, :5], torch.arange(5)[None], None,
                          torch.ones(5, 5, dtype=torch.bool).tril()[None, None])
        mask = torch.ones(n - 5, n, dtype=torch.bool)
        mask[:, 5:] = torch.ones(n - 5, n - 5, dtype=torch.bool).tril()
        h2, _ = llm.run(x[:, 5:], torch.arange(5, n)[None], pres, mask[None, None])
    print(f"layer-by-layer LLM vs transformers logits max abs {float((h @ llm.E.T - ref).abs().max()):.2e}; "
          f"with a cached prefix {float((h2 @ llm.E.T - ref[5:]).abs().max()):.2e}")
    asr, qa = d["train"]
    have = [it for it in asr if enc_file(it["path"]).exists()]
    haveq = [it for it in qa if enc_file(it["path"]).exists()]
    states = load_states([it["path"] for it in have + haveq])
    proj = make_projector()
    vocab = sorted({t for it in asr for t in it["ctc"]})
    ctc_map = {t: i + 1 for i, t in enumerate(vocab)}
    for it in haveq:
        it["ctc"] = [t for t in it["ctc"] if t in ctc_map]
    ctc = make_ctc_head(vocab, llm)
    params = list(proj.parameters()) + list(ctc.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    rng = random.Random(SEED)
    toks = [n_tokens_of(320 * states[it["path"]].shape[0]) for it in have]
    print(f"{len(have)} cached training clips: audio tokens mean {np.mean(toks):.1f}, median "
          f"{np.median(toks):.0f}, 90% {np.percentile(toks, 90):.0f}; answer tokens mean "
          f"{np.mean([len(it['answer_ids']) for it in have]):.1f}")
    for kind, pool in (("asr", have), ("qa", haveq)):
        times, ntoks, seqs = [], [], []
        for r in range(args.reps):
            items = rng.sample(pool, args.batch)
            t0 = time.time()
            ce, cl, nt = batch_loss(llm, prompts, proj, ctc, ctc_map, states, items)
            opt.zero_grad()
            (ce + 0.3 * cl).backward()
            opt.step()
            times.append(time.time() - t0)
            seqs.append(np.mean([states[it["path"]].shape[0] // STRIDE + len(it["after"])
                                 + len(it["answer_ids"]) for it in items]))
        print(f"{kind}: batch {args.batch}: {np.median(times):.2f} s per step (median of "
              f"{args.reps}; {np.median(times) / args.batch * 1000:.0f} ms per sample), mean "
              f"sequence after the cached prefix {np.mean(seqs):.1f} positions")
    t0 = time.time()
    easr, eqa = d["eval"]
    states.update(load_states([it["path"] for it in easr + eqa]))
    with torch.no_grad():
        generate(llm, prompts, proj, states, easr[:16], MAX_NEW_ASR)
    print(f"greedy decoding, 16 held-out clips x <= {MAX_NEW_ASR} tokens: {time.time() - t0:.1f} s")
