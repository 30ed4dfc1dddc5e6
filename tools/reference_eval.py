#!/usr/bin/env python3
"""Python reference speaker-verification pipeline: ONNX Runtime + kaldi-native-fbank, no torch.

    reference_eval.py --model fixtures/models/campplus.json --trials fixtures/trials/trials.txt \
        --audio-root .cache/speech [--embeddings-out OUT.tsv] [--scores-out S.txt] [--threads N]

For every utterance named in the trial list: read the WAV (16-bit PCM, `wave` module), compute
the model's front end exactly as its JSON config says (Kaldi fbank via kaldi-native-fbank,
samples scaled from [-1, 1) by `input_scale`, then per-utterance mean normalisation if
`mean_norm` is "utterance"), run the ONNX model one utterance at a time (batch 1, all frames),
then score each trial by the cosine of its two embeddings and report EER and minDCF
(P_target 0.01, C_miss = C_fa = 1, normalised by min(C_miss P_target, C_fa (1 - P_target)) as in
NIST SRE), overall and for the cross-language (`xlang`) target trials against all nontargets.

Files:
  --embeddings-out: one line per utterance, sorted by path: `relpath<TAB>v1 v2 ... v192`
                    (each value `%.8e`, which round-trips float32).
  --scores-out:     one line per trial, in trial order: `score target|nontarget enroll test`.

A WAV at another rate than the model's is resampled with a Kaiser-windowed sinc interpolator
(numpy, 32 zero crossings each side, beta 8.6, cut-off at 0.97 of the lower Nyquist rate) and a
line says so; the corpus from tools/setup_speech.sh is all 16 kHz, so this never happens there.

Needs only numpy, onnxruntime and kaldi-native-fbank (tools/requirements-reference.txt).
"""
import argparse
import json
import math
import os
import sys
import time
import wave

import kaldi_native_fbank as knf
import numpy as np
import onnxruntime as ort

WINDOWS = {"povey", "hamming", "hanning", "rectangular", "blackman"}


def read_trials(path):
    trials = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) not in (3, 4) or parts[0] not in ("0", "1") or (len(parts) == 4 and parts[3] != "xlang"):
                sys.exit(f"error: {path}:{lineno}: expected '<1|0> <enroll> <test> [xlang]'")
            trials.append((parts[0] == "1", parts[1], parts[2], len(parts) == 4))
    if not trials:
        sys.exit(f"error: {path}: no trials")
    return trials


def resample(x, src, dst, zeros=32, beta=8.6, rolloff=0.97):
    """Band-limited resampling of float samples x from src Hz to dst Hz (windowed sinc)."""
    n_out = int(math.floor(len(x) * dst / src))
    cutoff = rolloff * min(src, dst) / 2.0  # Hz
    half = zeros * src / (2.0 * cutoff)  # filter half-width in input samples
    t = np.arange(n_out) * (src / dst)  # output instants, in input samples
    out = np.empty(n_out, dtype=np.float64)
    taps = np.arange(-int(math.ceil(half)), int(math.ceil(half)) + 1)
    for start in range(0, n_out, 8192):
        tt = t[start:start + 8192]
        k = np.floor(tt)[:, None].astype(np.int64) + taps[None, :]
        d = tt[:, None] - k
        w = np.i0(beta * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, 1.0))) / np.i0(beta)
        w[np.abs(d) >= half] = 0.0  # Kaiser window
        h = (2.0 * cutoff / src) * np.sinc(2.0 * cutoff / src * d) * w
        valid = (k >= 0) & (k < len(x))
        out[start:start + len(tt)] = np.sum(np.where(valid, x[np.clip(k, 0, len(x) - 1)], 0.0) * h, axis=1)
    return out


def read_wav(path, rate):
    """Samples in [-1, 1) as float64 at `rate` Hz."""
    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                sys.exit(f"error: {path}: not 16-bit PCM WAV")
            ch, sr, n = w.getnchannels(), w.getframerate(), w.getnframes()
            data = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float64) / 32768.0
    except (wave.Error, EOFError) as e:
        sys.exit(f"error: {path}: unreadable WAV ({e})")
    if ch != 1:
        data = data.reshape(-1, ch).mean(axis=1)
    if data.size == 0:
        sys.exit(f"error: {path}: no audio")
    if sr != rate:
        print(f"note: {path}: {sr} Hz, resampled to {rate} Hz (windowed sinc)", file=sys.stderr)
        data = resample(data, sr, rate)
    return data


def fbank_options(cfg):
    fb = cfg["fbank"]
    if fb["window"] not in WINDOWS:
        sys.exit(f"error: fbank.window '{fb['window']}' not one of {sorted(WINDOWS)}")
    if fb["mean_norm"] not in ("utterance", "none"):
        sys.exit(f"error: fbank.mean_norm '{fb['mean_norm']}' not 'utterance' or 'none'")
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = float(fb["sample_rate"])
    fo.frame_length_ms = float(fb["frame_length_ms"])
    fo.frame_shift_ms = float(fb["frame_shift_ms"])
    fo.dither = float(fb["dither"])
    fo.preemph_coeff = float(fb["preemph_coeff"])
    fo.remove_dc_offset = bool(fb["remove_dc_offset"])
    fo.window_type = fb["window"]
    fo.round_to_power_of_two = bool(fb["round_to_power_of_two"])
    fo.snip_edges = bool(fb["snip_edges"])
    mo = o.mel_opts
    mo.num_bins = int(fb["num_mel_bins"])
    mo.low_freq = float(fb["low_freq"])
    mo.high_freq = float(fb["high_freq"])
    o.use_energy = bool(fb["use_energy"])
    o.raw_energy = bool(fb["raw_energy"])
    o.energy_floor = float(fb["energy_floor"])
    o.use_log_fbank = bool(fb["use_log_fbank"])
    o.use_power = bool(fb["use_power"])
    return o


def features(samples, cfg, opts):
    fb = cfg["fbank"]
    online = knf.OnlineFbank(opts)
    online.accept_waveform(float(fb["sample_rate"]), (samples * float(fb["input_scale"])).tolist())
    online.input_finished()
    n = online.num_frames_ready
    if n == 0:
        return None
    feats = np.array([online.get_frame(i) for i in range(n)], dtype=np.float32)
    if fb["mean_norm"] == "utterance":
        feats = feats - feats.mean(axis=0, keepdims=True)
    return feats


def operating_points(tar, non):
    """(p_miss, p_fa, threshold) at every cut between distinct sorted scores."""
    scores = np.concatenate([tar, non])
    is_tar = np.concatenate([np.ones(len(tar), bool), np.zeros(len(non), bool)])
    order = np.argsort(scores, kind="mergesort")
    scores, is_tar = scores[order], is_tar[order]
    miss = np.cumsum(is_tar)  # targets at or below each sorted score
    rej = np.cumsum(~is_tar)
    last = np.r_[scores[1:] != scores[:-1], True]  # cut only after the last of equal scores
    thr = np.r_[scores[0], np.r_[scores[1:], np.inf][last]]
    p_miss = np.r_[0.0, miss[last] / len(tar)]
    p_fa = np.r_[1.0, (len(non) - rej[last]) / len(non)]
    return p_miss, p_fa, thr


def eer(p_miss, p_fa, thr):
    d = p_miss - p_fa  # rises from -1 to +1
    i = int(np.nonzero((d[:-1] <= 0) & (d[1:] >= 0))[0][0])
    if d[i + 1] == d[i]:
        return (p_miss[i] + p_fa[i]) / 2, thr[i]
    a = -d[i] / (d[i + 1] - d[i])
    t = thr[i] + a * (thr[i + 1] - thr[i]) if np.isfinite(thr[i + 1]) else thr[i]
    return p_miss[i] + a * (p_miss[i + 1] - p_miss[i]), t


def min_dcf(p_miss, p_fa, thr, p_target=0.01, c_miss=1.0, c_fa=1.0):
    dcf = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(dcf))
    return dcf[i] / norm, thr[i]


def metrics(tar, non):
    pts = operating_points(np.asarray(tar, np.float64), np.asarray(non, np.float64))
    e, e_thr = eer(*pts)
    d, d_thr = min_dcf(*pts)
    return e, e_thr, d, d_thr


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model JSON config (its 'onnx' is relative to it)")
    ap.add_argument("--trials", required=True)
    ap.add_argument("--audio-root", required=True)
    ap.add_argument("--embeddings-out")
    ap.add_argument("--scores-out")
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    args = ap.parse_args()
    t0 = time.time()

    with open(args.model) as f:
        cfg = json.load(f)
    onnx_path = os.path.join(os.path.dirname(os.path.abspath(args.model)), cfg["onnx"])
    so = ort.SessionOptions()
    if args.threads:
        so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    opts = fbank_options(cfg)
    rate = int(cfg["fbank"]["sample_rate"])

    trials = read_trials(args.trials)
    utts = sorted({u for _, a, b, _ in trials for u in (a, b)})
    emb = {}
    t_feat = t_model = 0.0
    for i, u in enumerate(utts, 1):
        t1 = time.time()
        feats = features(read_wav(os.path.join(args.audio_root, u), rate), cfg, opts)
        if feats is None:
            sys.exit(f"error: {u}: shorter than one frame")
        t2 = time.time()
        out = sess.run([cfg["output"]], {cfg["input"]: feats[None]})[0]
        t_model += time.time() - t2
        t_feat += t2 - t1
        if out.shape != (1, cfg["embedding_dim"]) or not np.isfinite(out).all():
            sys.exit(f"error: {u}: bad embedding (shape {out.shape}, finite {np.isfinite(out).all()})")
        emb[u] = out[0]
        if i % 100 == 0:
            print(f"  {i}/{len(utts)} utterances", file=sys.stderr)

    unit = {u: v.astype(np.float64) / np.linalg.norm(v.astype(np.float64)) for u, v in emb.items()}
    scores = np.array([float(unit[a] @ unit[b]) for _, a, b, _ in trials])
    labels = np.array([t for t, _, _, _ in trials])
    xl = np.array([x for _, _, _, x in trials])
    e, e_thr, d, d_thr = metrics(scores[labels], scores[~labels])

    if args.embeddings_out:
        write_atomic(args.embeddings_out, "".join(
            u + "\t" + " ".join(f"{x:.8e}" for x in emb[u].tolist()) + "\n" for u in utts))
    if args.scores_out:
        write_atomic(args.scores_out, "".join(
            f"{s:.6f} {'target' if t else 'nontarget'} {a} {b}\n" for s, (t, a, b, _) in zip(scores, trials)))

    print(f"model {cfg['name']}: {len(utts)} utterances, {len(trials)} trials "
          f"({labels.sum()} target, {(~labels).sum()} nontarget); fbank {t_feat:.1f} s, "
          f"model {t_model:.1f} s, total {time.time() - t0:.1f} s", file=sys.stderr)
    print(f"EER={100 * e:.3f}% minDCF={d:.4f} (EER threshold {e_thr:.4f}, minDCF threshold {d_thr:.4f})")
    if xl.any():
        xe, _, xd, _ = metrics(scores[xl], scores[~labels])
        print(f"xlang targets ({xl.sum()}) vs all nontargets: EER={100 * xe:.3f}% minDCF={xd:.4f}")


if __name__ == "__main__":
    main()
