"""Batches, losses, decoding and scoring for tools/train_projector.py: cached encoder states,
padded projector outputs, cross-entropy + CTC, the CTC head's greedy WER, batched greedy
generation through the frozen LLM, items from the lists, WER / accuracy.
"""
from __future__ import annotations

import numpy as np

from whisper_wer import edits, normalise
from projector_common import EMBED_NORM, ENC_DIM, NORM_WEIGHT, STRIDE, WINDOW, die, enc_file


def load_states(paths) -> dict:
    out = {}
    for p in paths:
        if p not in out:
            f = enc_file(p)
            if not f.exists():
                die(f"no cached encoder states for {p}; run `train_projector.py precompute`")
            out[p] = np.load(f)
    return out


def padded_audio(proj, states: dict, items: list):
    """Projector outputs of a batch: ([b, T, H], token counts)."""
    import torch
    feats = [states[it["path"]] for it in items]
    fmax = max(f.shape[0] for f in feats)
    x = np.zeros((len(items), fmax, ENC_DIM), np.float32)
    for i, f in enumerate(feats):
        x[i, :f.shape[0]] = f
    n = [(f.shape[0] - WINDOW) // STRIDE + 1 for f in feats]
    return proj(torch.from_numpy(x)), n


def ctc_part(ctc, ctc_map, a, n, items):
    import torch
    import torch.nn.functional as F
    lp = torch.log_softmax(ctc(a), dim=-1).transpose(0, 1)  # [T, b, C]
    targets = [ctc_map[t] for it in items for t in it["ctc"]]
    return F.ctc_loss(lp, torch.tensor(targets), torch.tensor(n),
                      torch.tensor([len(it["ctc"]) for it in items]), blank=0,
                      reduction="mean", zero_infinity=True)


def batch_loss(llm, prompts, proj, ctc, ctc_map, states, items, use_llm=True):
    """(CE on the answer tokens, CTC, number of answer tokens) for items of one task; without
    the LLM (use_llm False: the CTC warm-up) CE is 0."""
    import torch
    import torch.nn.functional as F
    task = items[0]["task"]
    a, n = padded_audio(proj, states, items)
    ctc_loss = ctc_part(ctc, ctc_map, a, n, items) if ctc is not None else torch.zeros(())
    if not use_llm:
        # the CTC score is a cosine: also keep the audio tokens' norms at the embedding rows'
        # typical norm, so that the LLM phase starts from token-like inputs
        rows = torch.cat([a[i, :n[i]] for i in range(len(items))])
        norm = ((rows.norm(dim=-1) / EMBED_NORM - 1.0) ** 2).mean()
        return torch.zeros(()), ctc_loss + NORM_WEIGHT * norm, 0
    E = llm.E
    seqs, tgt_pos, tgt = [], [], []
    for i, it in enumerate(items):
        after, ans = it["after"], it["answer_ids"]
        s = torch.cat([a[i, :n[i]], E[torch.tensor(after + ans[:-1], dtype=torch.int64)]])
        start = n[i] + len(after) - 1
        tgt_pos += [(i, start + j) for j in range(len(ans))]
        tgt += ans
        seqs.append(s)
    L = max(s.shape[0] for s in seqs)
    x = torch.zeros(len(items), L, E.shape[1])
    for i, s in enumerate(seqs):
        x[i, :s.shape[0]] = s
    pids, past = prompts.prefix[task]
    P = len(pids)
    past = [(k.expand(len(items), -1, -1, -1), v.expand(len(items), -1, -1, -1)) for k, v in past]
    mask = torch.ones(L, P + L, dtype=torch.bool)
    mask[:, P:] = torch.ones(L, L, dtype=torch.bool).tril()
    pos = (P + torch.arange(L))[None].expand(len(items), -1)
    h, _ = llm.run(x, pos, past, mask[None, None])
    bi = torch.tensor([p[0] for p in tgt_pos])
    ti = torch.tensor([p[1] for p in tgt_pos])
    ce = F.cross_entropy(h[bi, ti] @ E.T, torch.tensor(tgt))
    return ce, ctc_loss, len(tgt)


def ctc_greedy_wer(prompts, proj, ctc, vocab, states, items) -> float:
    """WER of the CTC head's own greedy transcripts (collapse repeats, drop blanks): a cheap
    view of what the audio tokens carry, used during the CTC warm-up."""
    import torch
    errs = words = 0
    with torch.no_grad():
        for c in range(0, len(items), 32):
            chunk = items[c:c + 32]
            a, n = padded_audio(proj, states, chunk)
            best = ctc(a).argmax(-1)
            for i, it in enumerate(chunk):
                seq, prev = [], -1
                for k in best[i, :n[i]].tolist():
                    if k != prev and k != 0:
                        seq.append(vocab[k - 1])
                    prev = k
                hyp = prompts.tok.decode(seq, skip_special_tokens=True)
                r = normalise(it["answer"]).split()
                errs += edits(r, normalise(hyp).split())
                words += len(r)
    return 100.0 * errs / max(1, words)


def generate(llm, prompts, proj, states, items, max_new, bs=16) -> list:
    """Batched greedy decoding (left padding after the cached prefix); token ids per item,
    stop token excluded."""
    import torch
    E = llm.E
    order = sorted(range(len(items)), key=lambda i: states[items[i]["path"]].shape[0])
    out = [None] * len(items)
    with torch.no_grad():
        for c0 in range(0, len(order), bs):
            idx = order[c0:c0 + bs]
            chunk = [items[i] for i in idx]
            task = chunk[0]["task"]
            a, n = padded_audio(proj, states, chunk)
            seqs = [torch.cat([a[i, :n[i]], E[torch.tensor(it["after"], dtype=torch.int64)]])
                    for i, it in enumerate(chunk)]
            b, L = len(chunk), max(s.shape[0] for s in seqs)
            x = torch.zeros(b, L, E.shape[1])
            m = torch.zeros(b, L, dtype=torch.bool)
            for i, s in enumerate(seqs):
                x[i, L - s.shape[0]:] = s
                m[i, L - s.shape[0]:] = True
            pids, past = prompts.prefix[task]
            P = len(pids)
            past = [(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in past]
            pos = P + (m.long().cumsum(1) - 1).clamp(min=0)
            mask = torch.ones(b, 1, L, P + L, dtype=torch.bool)
            mask[:, 0, :, P:] = torch.ones(L, L, dtype=torch.bool).tril()[None] & m[:, None, :]
            keys = torch.cat([torch.ones(b, P, dtype=torch.bool), m], 1)
            h, pres = llm.run(x, pos, past, mask)
            last = pos[:, -1]
            toks = [[] for _ in chunk]
            done = [False] * b
            for t in range(max_new):
                nxt = (h[:, -1] @ E.T).argmax(-1)
                for i in range(b):
                    if not done[i]:
                        if int(nxt[i]) == prompts.im_end:
                            done[i] = True
                        else:
                            toks[i].append(int(nxt[i]))
                if all(done) or t == max_new - 1:
                    break
                last = last + 1
                keys = torch.cat([keys, torch.ones(b, 1, dtype=torch.bool)], 1)
                h, pres = llm.run(E[nxt][:, None], last[:, None], pres, keys[:, None, None, :])
            for i, j in enumerate(idx):
                out[j] = toks[i]
    return out


def make_items(prompts, rows, qa_rows, texts) -> tuple:
    asr = [dict(path=p, task="asr", text=t, answer=t, after=prompts.after_ids("asr", None),
                answer_ids=prompts.answer_ids(t), ctc=prompts.enc(t)) for p, t in rows]
    qa = [dict(path=p, task="qa", text=texts[p], question=q, answer=a,
               after=prompts.after_ids("qa", q), answer_ids=prompts.answer_ids(a),
               ctc=prompts.enc(texts[p])) for p, q, a in qa_rows]
    return asr, qa


def sdi(ref: list, hyp: list) -> tuple:
    """(substitutions, deletions, insertions) of one minimum-edit alignment."""
    n, m = len(ref), len(hyp)
    d = [[(0, 0, 0, 0)] * (m + 1) for _ in range(n + 1)]  # (total, S, D, I)
    for i in range(1, n + 1):
        d[i][0] = (i, 0, i, 0)
    for j in range(1, m + 1):
        d[0][j] = (j, 0, 0, j)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            t, s_, dl, ins = d[i - 1][j - 1]
            c = int(ref[i - 1] != hyp[j - 1])
            best = (t + c, s_ + c, dl, ins)
            t, s_, dl, ins = d[i - 1][j]
            if t + 1 < best[0]:
                best = (t + 1, s_, dl + 1, ins)
            t, s_, dl, ins = d[i][j - 1]
            if t + 1 < best[0]:
                best = (t + 1, s_, dl, ins + 1)
            d[i][j] = best
    return d[n][m][1:]


def score(prompts, items, outs) -> dict:
    errs = words = right = 0
    hyps = []
    for it, ids in zip(items, outs):
        hyp = prompts.tok.decode(ids, skip_special_tokens=True).strip()
        hyps.append(hyp)
        r, h = normalise(it["answer"]).split(), normalise(hyp).split()
        errs += edits(r, h)
        words += len(r)
        right += r == h
    return dict(wer=100.0 * errs / max(1, words), acc=100.0 * right / max(1, len(items)),
                errors=errs, words=words, right=right, n=len(items), hyps=hyps)
