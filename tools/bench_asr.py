#!/usr/bin/env python3
"""voxq's Whisper tiny.en and SmolLM2-135M side by side with the CPU peers, in one run on this
machine: faster-whisper (CTranslate2, the very model.bin voxq converts from), whisper.cpp
(pywhispercpp, on a ggml file written from the same weights by tools/whisper_ggml.py) and
llama.cpp (llama-cpp-python, on GGUF files of the same SmolLM2 weights).

Set-up first: `bash tools/setup_peers.sh` (venvs .cache/peers-venv-{fw,wcpp,llama}, the ggml and
GGUF files under .cache/peers/); `make bench-asr` does both. Never needed by `make test`.

ASR: every system transcribes the same list (fixtures/whisper/lists/asterisk_librivox.tsv, 556
utterances: Asterisk prompts with words + LibriVox), greedy (one beam, temperature 0 only: no
fallback, no compression-ratio / log-prob / no-speech checks), no timestamps, no VAD, no
conditioning on earlier text, English. WER with ONE normaliser for every system
(tools/whisper_wer.py `normalise`, the normalisation voxq's eval-asr has in Rust). Time: wall
time of the whole process (start, model load, audio read, transcription) and, for the peers,
the transcription alone (voxq's eval-asr prints no such split). Systems run in turns: for each
repeat, for each thread count, every system once (voxq, fw, wcpp, voxq, ...), so machine load
that drifts during the run falls on all of them alike. Padding of clips shorter than 30 s
(the table states it per row): voxq and transformers pad the AUDIO with zeros to 30 s and take
the log-mel of that; whisper.cpp pads the audio too (30 s of zeros after the clip); faster-
whisper computes the log-mel of the clip alone and pads the FEATURES with zeros (a value that
is not the log-mel of silence) — the row `fw ... pad-audio-30s` hands faster-whisper the clip
already padded to 30 s, the voxq/transformers front end.

LLM: llama.cpp prompt evaluation and generation tokens/s at 32/128/512 prompt tokens (a fixed
prompt cut to that many tokens, then --gen-tokens greedy tokens), for each GGUF (f32, f16,
q8_0); voxq's `bench lm` on the ONNX export of the same SmolLM2 weights (.cache/llm/smollm2/onnx)
at the same prompt lengths, and on any `--voxq-lm` folder (e.g. the dynamic-int8 LLM autoquant
writes).

Usage:
  python3 tools/bench_asr.py [--limit N] [--threads 1,2] [--repeat 1]
      [--systems voxq,fw-f32,fw-f32-pad,fw-int8,wcpp-f16,wcpp-q8_0] [--voxq-model DIR ...]
      [--llm | --no-asr --llm] [--voxq-lm DIR ...] [--out out/bench-asr] [--report-only]
  (e.g. --voxq-model out/whisper-int8 adds a voxq row per extra folder.) Writes
  OUT/REPORT.md, OUT/results.json and the hypotheses OUT/hyp/*.tsv.

Worker mode (run by the driver inside a peer's venv; not for direct use):
  VENV/bin/python tools/bench_asr.py --worker fw|wcpp|llama ...
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
VENV = {"fw": CACHE / "peers-venv-fw", "wcpp": CACHE / "peers-venv-wcpp", "llama": CACHE / "peers-venv-llama"}
CT2_DIR = CACHE / "whisper/tiny.en/ct2"
GGML_DIR = CACHE / "peers/ggml"
GGUF_DIR = CACHE / "peers/gguf"
WHISPER_ONNX = CACHE / "whisper/tiny.en/onnx"
SMOLLM2_ONNX = CACHE / "llm/smollm2/onnx"
SAMPLE_RATE = 16000
WINDOW = 30 * SAMPLE_RATE
NICE = 10

PAD_AUDIO = "audio padded to 30 s, then log-mel"
PAD_FEATURES = "log-mel of the clip, features zero-padded to 3000 frames"


# ------------------------------------------------------------------------------------------
# shared helpers (stdlib + numpy only: the workers import these inside the peer venvs)


def read_list(path: Path, limit: int) -> list:
    rows = []
    for line in path.read_text().splitlines():
        if "\t" in line:
            audio, ref = line.split("\t", 1)
            rows.append((audio, ref))
    return rows[:limit] if limit else rows


def read_wav(path: Path):
    import wave

    import numpy as np

    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: want 16 kHz mono 16-bit PCM")
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def write_hyp(path: Path, names: list, texts: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\t{' '.join(t.split())}\n" for n, t in zip(names, texts)))


# ------------------------------------------------------------------------------------------
# workers


def worker_asr(a) -> dict:
    import numpy as np

    rows = read_list(Path(a.list), a.limit)
    audio = [read_wav(Path(a.audio_root) / p) for p, _ in rows]
    t0 = time.perf_counter()
    if a.worker == "fw":
        from faster_whisper import WhisperModel

        model = WhisperModel(a.model, device="cpu", compute_type=a.compute_type,
                             cpu_threads=a.threads, num_workers=1)

        def run(x):
            if a.pad_audio and len(x) < WINDOW:
                x = np.concatenate([x, np.zeros(WINDOW - len(x), dtype=np.float32)])
            segments, _ = model.transcribe(
                x, language="en", task="transcribe", beam_size=1, best_of=1, temperature=0.0,
                compression_ratio_threshold=None, log_prob_threshold=None,
                no_speech_threshold=None, condition_on_previous_text=False,
                without_timestamps=True, vad_filter=False, word_timestamps=False)
            return "".join(s.text for s in segments)
    else:
        from pywhispercpp.model import Model

        model = Model(a.model, redirect_whispercpp_logs_to=None, n_threads=a.threads,
                      print_progress=False, print_realtime=False, print_timestamps=False,
                      no_timestamps=True, no_context=True, language="en", temperature=0.0,
                      temperature_inc=0.0, logprob_thold=-1.0e9, no_speech_thold=1.0,
                      audio_ctx=0)

        def run(x):
            return "".join(s.text for s in model.transcribe(x))
    load_s = time.perf_counter() - t0
    texts = []
    t1 = time.perf_counter()
    for x in audio:
        texts.append(run(x).strip())
    transcribe_s = time.perf_counter() - t1
    write_hyp(Path(a.hyp), [p for p, _ in rows], texts)
    return {"load_s": load_s, "transcribe_s": transcribe_s, "utterances": len(rows)}


# A fixed English text; the prompt for N tokens is its first N tokens (repeated if short).
PROMPT_TEXT = (
    "The old lighthouse keeper climbed the narrow stairs every evening at dusk, carrying a lamp "
    "and a small notebook in which he wrote the weather, the ships that passed, and the names of "
    "the birds that rested on the railing. In winter the storms came from the north and the sea "
    "rose against the rocks below, but the light never failed. "
)


def worker_llama(a) -> dict:
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    contexts = [int(c) for c in a.contexts.split(",")]
    out = []
    for ctx in contexts:
        llm = Llama(a.model, n_ctx=ctx + a.gen_tokens + 16, n_threads=a.threads,
                    n_threads_batch=a.threads, n_batch=512, n_ubatch=512, seed=0,
                    verbose=False)
        base = llm.tokenize(PROMPT_TEXT.encode(), add_bos=False, special=False)
        prompt = [llm.token_bos()] + (base * (ctx // len(base) + 1))[: ctx - 1]
        pe, gen = [], []
        for _ in range(a.runs):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(prompt)
            pe.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            for _ in range(a.gen_tokens):  # greedy: argmax of the last position's logits
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                               shape=(llm.n_vocab(),))
                llm.eval([int(np.argmax(logits))])
            gen.append(time.perf_counter() - t1)
        out.append({
            "context": ctx, "gen_tokens": a.gen_tokens, "runs": a.runs,
            "prompt_eval_tok_s": ctx / statistics.median(pe),
            "gen_tok_s": a.gen_tokens / statistics.median(gen),
        })
        del llm
    return {"results": out}


# ------------------------------------------------------------------------------------------
# driver


def load_normaliser():
    sys.path.insert(0, str(ROOT / "tools"))
    from whisper_wer import edits, normalise  # noqa: E402 (the one normaliser for every system)

    return normalise, edits


def score(hyp: Path, rows: list) -> dict:
    normalise, edits = load_normaliser()
    got = {}
    for line in hyp.read_text().splitlines():
        name, _, text = line.partition("\t")
        got[name] = text
    errors = words = missing = 0
    for audio, ref in rows:
        r = normalise(ref).split()
        if audio not in got:
            missing += 1
        errors += edits(r, normalise(got.get(audio, "")).split())
        words += len(r)
    return {"wer": 100.0 * errors / max(words, 1), "errors": errors, "words": words, "missing": missing}


def agreement(hyp: Path, ref_hyp: Path) -> str:
    """How many utterances of hyp have the same normalised text as ref_hyp ("–" without voxq)."""
    if not ref_hyp.exists() or not hyp.exists():
        return "–"
    normalise, _ = load_normaliser()

    def read(p):
        return dict(line.partition("\t")[::2] for line in p.read_text().splitlines())

    a, b = read(hyp), read(ref_hyp)
    same = sum(normalise(a[k]) == normalise(b.get(k, "")) for k in a)
    return f"{same}/{len(a)}"


def voxq_hyp(per_utt: Path, hyp: Path) -> None:
    """voxq eval-asr --out rows: audio, reference, hypothesis, errors, words (a header line)."""
    names, texts = [], []
    for line in per_utt.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 3 and cols[0] != "audio":
            names.append(cols[0])
            texts.append(cols[2])
    write_hyp(hyp, names, texts)


def run_timed(cmd: list, log: Path) -> tuple:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(["nice", "-n", str(NICE)] + cmd, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=f, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}); see {log}")
    return wall, p.stdout


def backend_of(folder: str) -> str:
    """"OpenVINO" when the Whisper or LLM folder's parts are OpenVINO engine folders (`voxq build
    MODEL_DIR --target openvino`), else "ONNX Runtime"."""
    d = Path(folder)
    for cfg, key in (("whisper.json", ("decoder_file",)), ("llm.json", ("files", "decoder"))):
        if (d / cfg).is_file():
            v = json.loads((d / cfg).read_text())
            for k in key:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            m = d / v / "manifest.json" if isinstance(v, str) else None
            if m is not None and m.is_file() and json.loads(m.read_text()).get("target") == "openvino":
                return "OpenVINO"
    return "ONNX Runtime"


def asr_systems(a) -> list:
    systems = []
    for name in a.systems.split(","):
        if name == "voxq":
            for m in [str(WHISPER_ONNX)] + a.voxq_model:
                label = "voxq" if m == str(WHISPER_ONNX) else f"voxq {Path(m).name}"
                if backend_of(m) == "OpenVINO":
                    label += " (OpenVINO)"
                systems.append({"id": label.replace(" ", "-"), "system": label, "kind": "voxq",
                                "model": m, "precision": "fp32" if label == "voxq" else Path(m).name,
                                "padding": PAD_AUDIO})
        elif name in ("fw-f32", "fw-f32-pad", "fw-int8", "fw-int8-pad"):
            ct = "int8" if "int8" in name else "float32"
            pad = name.endswith("-pad")
            systems.append({"id": name, "system": "faster-whisper " + ("pad-audio-30s" if pad else "default"),
                            "kind": "fw", "model": str(CT2_DIR), "precision": ct, "pad": pad,
                            "padding": PAD_AUDIO if pad else PAD_FEATURES})
        elif name.startswith("wcpp-"):
            t = name[len("wcpp-"):]
            systems.append({"id": name, "system": "whisper.cpp", "kind": "wcpp",
                            "model": str(GGML_DIR / f"ggml-tiny.en-{t}.bin"), "precision": t,
                            "padding": PAD_AUDIO})
        else:
            raise SystemExit(f"unknown system {name}")
    return systems


def run_asr_once(a, s: dict, threads: int, rep: int, out: Path) -> dict:
    tag = f"{s['id']}.t{threads}.r{rep}"
    hyp = out / "hyp" / f"{tag}.tsv"
    log = out / "logs" / f"{tag}.log"
    rec = {"id": s["id"], "threads": threads, "repeat": rep}
    if s["kind"] == "voxq":
        per_utt = out / "logs" / f"{tag}.voxq.tsv"
        cmd = [a.voxq, "eval-asr", "--model", s["model"], "--list", str(a.list), "--audio-root",
               str(a.audio_root), "--threads", str(threads), "--device", "cpu", "--quiet",
               "--out", str(per_utt), "--json", str(out / "logs" / f"{tag}.voxq.json"),
               # greedy at temperature 0 once, like the peers' settings here (no fallback)
               "--no-safeguards"]
        if a.limit:
            lim = out / "logs" / f"list.{a.limit}.tsv"
            lim.write_text("".join(f"{p}\t{r}\n" for p, r in read_list(a.list, a.limit)))
            cmd[cmd.index("--list") + 1] = str(lim)
        wall, _ = run_timed(cmd, log)
        voxq_hyp(per_utt, hyp)
        rec["wall_s"] = wall
    else:
        py = str(VENV[s["kind"]] / "bin/python")
        cmd = [py, str(ROOT / "tools/bench_asr.py"), "--worker", s["kind"], "--model", s["model"],
               "--threads", str(threads), "--list", str(a.list), "--audio-root", str(a.audio_root),
               "--limit", str(a.limit), "--hyp", str(hyp)]
        if s["kind"] == "fw":
            cmd += ["--compute-type", s["precision"]] + (["--pad-audio"] if s.get("pad") else [])
        wall, stdout = run_timed(cmd, log)
        rec.update(json.loads(stdout.strip().splitlines()[-1]))
        rec["wall_s"] = wall
    rec.update(score(hyp, read_list(a.list, a.limit)))
    rec["loadavg_after"] = os.getloadavg()[0]
    print(f"  {tag}: WER {rec['wer']:.2f}%  wall {rec['wall_s']:.1f} s"
          + (f"  (transcribe {rec['transcribe_s']:.1f} s)" if "transcribe_s" in rec else "")
          + f"  load {rec['loadavg_after']:.2f}", flush=True)
    return rec


def run_llm(a, out: Path) -> list:
    res = []
    ggufs = sorted(GGUF_DIR.glob("smollm2-135m-*.gguf"))
    lms = [("fp32", SMOLLM2_ONNX)] + [(Path(d).name, Path(d)) for d in a.voxq_lm]
    for rep in range(a.repeat):
        for threads in a.thread_list:
            for name, d in lms:
                js = out / "logs" / f"voxq-lm-{name}.t{threads}.json"
                cmd = [a.voxq, "bench", "lm", "--model", str(d), "--context", a.contexts,
                       "--max-new-tokens", str(a.gen_tokens), "--runs", str(a.llm_runs), "--threads",
                       str(threads), "--device", "cpu", "--json", str(js)]
                wall, _ = run_timed(cmd, out / "logs" / f"voxq-lm-{name}.t{threads}.log")
                for r in json.loads(js.read_text()):
                    res.append({"system": f"voxq {name} ({backend_of(str(d))})", "threads": threads, "repeat": rep,
                                "context": r["context"], "ttft_ms": r["prefill_ms"],
                                "prompt_eval_tok_s": r["context"] / (r["prefill_ms"] / 1000.0),
                                "gen_tok_s": r["tokens_per_s"], "gen_tokens": r["new_tokens"]})
                print(f"  voxq bench lm {name} t{threads}: {wall:.1f} s", flush=True)
            for g in ggufs:
                cmd = [str(VENV["llama"] / "bin/python"), str(ROOT / "tools/bench_asr.py"), "--worker",
                       "llama", "--model", str(g), "--threads", str(threads), "--contexts",
                       a.contexts, "--gen-tokens", str(a.gen_tokens), "--runs", str(a.llm_runs)]
                wall, stdout = run_timed(cmd, out / "logs" / f"{g.stem}.t{threads}.log")
                for r in json.loads(stdout.strip().splitlines()[-1])["results"]:
                    r.update({"system": f"llama.cpp {g.stem.split('-')[-1]}", "threads": threads,
                              "repeat": rep})
                    res.append(r)
                print(f"  {g.name} t{threads}: {wall:.1f} s", flush=True)
    return res


def report(a, out: Path, systems: list, asr: list, llm: list, meta: dict) -> str:
    lines = ["# voxq and its CPU peers, side by side", "",
             f"Run {meta['started']} – {meta['finished']} on {meta['machine']}; "
             f"load average (1 min) {meta['load_start']:.2f} at the start, {meta['load_end']:.2f} at the end "
             "(the machine is shared; every process runs under `nice -n 10`, systems in turns).",
             f"Command: `{meta['command']}`", ""]
    if asr:
        n = asr[0]["utterances"] if "utterances" in asr[0] else len(read_list(a.list, a.limit))
        lines += [f"## Whisper tiny.en: {n} utterances of `{a.list.relative_to(ROOT)}`"
                  + (f" (first {a.limit})" if a.limit else ""), "",
                  f"Greedy, temperature 0 only, no timestamps, no VAD, no conditioning; WER with "
                  f"`tools/whisper_wer.py` normalise ({asr[0]['words']} reference words). Wall = the whole "
                  "process (start, model load, audio, transcription); transcribe = the peers' "
                  "transcription loop alone. Times are medians over repeats.", "",
                  "Same as voxq = utterances whose normalised transcript equals voxq fp32's.", "",
                  "| system | weights | threads | WER % | errors | same as voxq | wall (s) | transcribe (s) | front end (short clips) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for threads in a.thread_list:
            for s in systems:
                rs = [r for r in asr if r["id"] == s["id"] and r["threads"] == threads]
                if not rs:
                    continue
                wall = statistics.median(r["wall_s"] for r in rs)
                tr = [r["transcribe_s"] for r in rs if "transcribe_s" in r]
                tr_s = f"{statistics.median(tr):.1f}" if tr else "–"
                same = agreement(out / "hyp" / f"{s['id']}.t{threads}.r0.tsv",
                                 out / "hyp" / f"voxq.t{threads}.r0.tsv")
                lines.append(f"| {s['system']} | {s['precision']} | {threads} | {rs[0]['wer']:.2f} | "
                             f"{rs[0]['errors']} | {same} | {wall:.1f} | {tr_s} | {s['padding']} |")
        lines.append("")
    if llm:
        lines += ["## SmolLM2-135M-Instruct: llama.cpp vs voxq", "",
                  f"llama.cpp: a fixed prompt of N tokens, then {a.gen_tokens} greedy tokens; median of "
                  f"{a.llm_runs} runs. voxq: `voxq bench lm` on the ONNX export of the same weights "
                  "(the same prompt lengths; its prompt is one step, first token = that step; fp32, and any "
                  "`--voxq-lm` folder, e.g. autoquant's dynamic int8). f32/f16/q8_0 = the GGUF's weight type "
                  "(`convert_hf_to_gguf.py --outtype`).", "",
                  "| system | threads | prompt tokens | prompt eval tok/s | generation tok/s | first token (ms) |",
                  "|---|---:|---:|---:|---:|---:|"]
        keys = []
        for r in llm:
            k = (r["system"], r["threads"], str(r["context"]))
            if k not in keys:
                keys.append(k)
        for k in sorted(keys, key=lambda k: (k[1], k[0])):
            rs = [r for r in llm if (r["system"], r["threads"], str(r["context"])) == k]
            pe = [r["prompt_eval_tok_s"] for r in rs if "prompt_eval_tok_s" in r]
            ttft = [r["ttft_ms"] for r in rs if "ttft_ms" in r]
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | "
                         + (f"{statistics.median(pe):.0f}" if pe else "–") + " | "
                         + f"{statistics.median(r['gen_tok_s'] for r in rs):.1f} | "
                         + (f"{statistics.median(ttft):.0f}" if ttft else "–") + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="voxq vs faster-whisper / whisper.cpp / llama.cpp")
    ap.add_argument("--worker", choices=["fw", "wcpp", "llama"])
    ap.add_argument("--model")
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--pad-audio", action="store_true")
    ap.add_argument("--hyp")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--list", type=Path, default=ROOT / "fixtures/whisper/lists/asterisk_librivox.tsv")
    ap.add_argument("--audio-root", type=Path, default=ROOT)
    ap.add_argument("--limit", type=int, default=0, help="only the first N utterances (0 = all)")
    ap.add_argument("--systems", default="voxq,fw-f32,fw-f32-pad,fw-int8,wcpp-f16,wcpp-q8_0")
    ap.add_argument("--voxq", default=os.environ.get("VOXQ", str(ROOT / "target/release/voxq")))
    ap.add_argument("--voxq-model", action="append", default=[], help="extra voxq Whisper folder")
    ap.add_argument("--voxq-lm", action="append", default=[], help="extra voxq LLM folder (llm.json)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--llm", action="store_true", help="also the LLM comparison")
    ap.add_argument("--no-asr", action="store_true")
    ap.add_argument("--contexts", default="32,128,512")
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--llm-runs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "out/bench-asr")
    ap.add_argument("--report-only", action="store_true", help="rewrite REPORT.md from results.json")
    a = ap.parse_args()

    if a.worker:
        a.threads = int(a.threads)
        res = worker_llama(a) if a.worker == "llama" else worker_asr(a)
        print(json.dumps(res))
        return 0

    a.thread_list = [int(t) for t in a.threads.split(",")]
    a.list = a.list.resolve()
    out = a.out.resolve()
    if a.report_only:  # re-render REPORT.md from OUT/results.json (same options as the run)
        saved = json.loads((out / "results.json").read_text())
        text = report(a, out, saved["systems"], saved["asr"], saved["llm"], saved["meta"])
        (out / "REPORT.md").write_text(text)
        print(text)
        return 0
    (out / "hyp").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'})",
            "load_start": os.getloadavg()[0], "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    systems = [] if a.no_asr else asr_systems(a)
    asr = []
    for rep in range(a.repeat):
        for threads in a.thread_list:
            for s in systems:
                asr.append(run_asr_once(a, s, threads, rep, out))
    llm = run_llm(a, out) if a.llm else []
    meta["finished"] = time.strftime("%H:%M:%S UTC", time.gmtime())
    meta["load_end"] = os.getloadavg()[0]
    text = report(a, out, systems, asr, llm, meta)
    (out / "REPORT.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"meta": meta, "systems": systems, "asr": asr, "llm": llm},
                                                 indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
