"""The window-level frame-stacking projector of tools/llm_export.py (fixed and trimmed-to-audio
forms), its ONNX export, the audio_llm.json schema (audio_llm_config, also used by
tools/train_projector.py), the `projector` subcommand and the onnxruntime audio-prompt path.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from whisper_ct2 import export_onnx, feature_extractor, log_mel, ort_session, read_wav
from llm_export_common import (AUDIO_DIR, ONNX_DIR, ROOT, SEED, SPEECH, STRIDE, TASKS,
                               WHISPER_ONNX, WINDOW, die, set_threads)
from llm_export_onnx import OrtLlm, describe_onnx
from llm_export_model import replace_dir


def make_projector(enc_dim: int, hidden: int, window: int = WINDOW, stride: int = STRIDE,
                   n_frames: int = 1500):
    """SALMONN-style window-level projector without the Q-Former: the encoder frames of each
    window (window frames, hop stride, no padding: the tail that does not fill a window is
    dropped, as F.unfold does in SALMONN) are stacked frame-major into one vector
    [f0(enc_dim), f1(enc_dim), ...] and mapped by Linear(window*enc_dim -> hidden), GELU (erf),
    Linear(hidden -> hidden). Initialised right after torch.manual_seed(SEED) with PyTorch's
    default Linear init: UNTRAINED, for plumbing only."""
    import torch
    from torch import nn

    n_tokens = (n_frames - window) // stride + 1

    class Projector(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_dim, self.window, self.n_tokens = enc_dim, window, n_tokens
            idx = (torch.arange(n_tokens)[:, None] * stride + torch.arange(window)[None]).reshape(-1)
            self.register_buffer("index", idx, persistent=False)
            self.fc1 = nn.Linear(window * enc_dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, hidden)

        def forward(self, encoder_states):
            b = encoder_states.shape[0]
            x = encoder_states.index_select(1, self.index)  # [b, n_tokens*window, enc_dim]
            x = x.reshape(b, self.n_tokens, self.window * self.enc_dim)
            return self.fc2(self.act(self.fc1(x)))

    torch.manual_seed(SEED)
    return Projector().eval()


ENCODER_STATES, SAMPLES_PER_STATE = 1500, 320


def trim_tokens(n_samples: int, window: int, stride: int) -> int:
    """Audio tokens of a clip with trim_to_audio: max(1, ceil(max(1, ceil(n / 320)) / stride)),
    at most (1500 - window) // stride + 1."""
    frames = max(1, -(-n_samples // SAMPLES_PER_STATE))
    return min(max(1, -(-frames // stride)), (ENCODER_STATES - window) // stride + 1)


def trim_states(n_tokens: int, window: int, stride: int) -> int:
    """Encoder states the projector takes for n_tokens tokens (capped at 1500)."""
    return min((max(n_tokens, 1) - 1) * stride + window, ENCODER_STATES)


def make_trim_projector(enc_dim: int, hidden: int, window: int = WINDOW, stride: int = STRIDE):
    """make_projector's module (same layers, created in the same order right after
    torch.manual_seed(SEED): the same weights) for any number of encoder frames: the windows
    are the (frames - window) // stride + 1 full ones of the frames given (trim_to_audio feeds
    exactly (n_tokens - 1) * stride + window frames). The gather index is computed from the
    input's length, so the exported graph has a dynamic frames axis."""
    import torch
    from torch import nn

    class TrimProjector(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_dim, self.window, self.stride = enc_dim, window, stride
            self.n_tokens = (ENCODER_STATES - window) // stride + 1
            self.fc1 = nn.Linear(window * enc_dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, hidden)

        def forward(self, encoder_states):
            b = encoder_states.shape[0]
            frames = encoder_states.shape[1]
            n = torch.div(frames - self.window, self.stride, rounding_mode="floor") + 1
            idx = (torch.arange(n)[:, None] * self.stride
                   + torch.arange(self.window)[None]).reshape(-1)
            x = encoder_states.index_select(1, idx)  # [b, n*window, enc_dim]
            x = x.reshape(b, -1, self.window * self.enc_dim)
            return self.fc2(self.act(self.fc1(x)))

    torch.manual_seed(SEED)
    return TrimProjector().eval()


def export_trim_projector(proj, out: Path) -> None:
    """projector.onnx with dynamic batch and frames axes (traced at 2 x 101 frames)."""
    import torch
    x = torch.randn(2, trim_states(6, proj.window, proj.stride), proj.enc_dim)
    export_onnx(proj, (x,), out / "projector.onnx", ["encoder_states"], ["audio_embeds"],
                {"encoder_states": {0: "batch", 1: "frames"},
                 "audio_embeds": {0: "batch", 1: "n_tokens"}})


def export_projector(proj, out: Path, n_frames: int) -> None:
    import torch
    x = torch.randn(2, n_frames, proj.enc_dim)
    export_onnx(proj, (x,), out / "projector.onnx", ["encoder_states"], ["audio_embeds"],
                {"encoder_states": {0: "batch"}, "audio_embeds": {0: "batch"}})


def audio_llm_config(name: str, encoder: str, whisper_cfg: str, enc_dim: int, n_frames: int,
                     llm_dir: str, llm_cfg: dict, proj, layout: str) -> dict:
    chat = llm_cfg["chat"]
    template = (chat["system_prefix"] + "{system}" + chat["system_suffix"] + chat["user_prefix"]
                + "{prompt}" + chat["user_suffix"])
    return {
        "model": name,
        "trained": False,
        "about": "SALMONN-style audio LLM: Whisper encoder -> window-level frame-stacking "
                 "projector -> decoder-only LLM prompted with <SpeechHere> where the audio "
                 "embeddings go. The projector is UNTRAINED (random init, torch.manual_seed("
                 f"{SEED})): outputs test the plumbing, not quality.",
        "layout": layout,
        "paths": "relative to the folder of this file",
        "encoder": {"file": encoder, "config": whisper_cfg, "input": "input_features",
                    "output": "last_hidden_state", "n_frames": n_frames, "d_model": enc_dim},
        "projector": {"file": "projector.onnx", "type": "window_stack_mlp",
                      "input": "encoder_states", "output": "audio_embeds",
                      "input_shape": ["batch", n_frames, enc_dim],
                      "output_shape": ["batch", proj.n_tokens, llm_cfg["hidden_size"]],
                      "window": proj.window, "stride": STRIDE, "n_audio_tokens": proj.n_tokens,
                      "in_dim": enc_dim, "out_dim": llm_cfg["hidden_size"],
                      "mlp": f"Linear({proj.window}*{enc_dim} -> {llm_cfg['hidden_size']}), "
                             f"GELU(erf), Linear({llm_cfg['hidden_size']} -> "
                             f"{llm_cfg['hidden_size']})",
                      "stacking": "window w = frames [w*stride, w*stride+window), concatenated "
                                  "frame-major; frames past the last full window are dropped",
                      "seed": SEED, "trained": False},
        "llm": {"dir": llm_dir, "config": "llm.json" if llm_dir == "." else f"{llm_dir}/llm.json",
                "hidden_size": llm_cfg["hidden_size"]},
        "speech_placeholder": SPEECH,
        "prompt_template": template,
        "system": chat["default_system"],
        "tasks": dict(TASKS),
        "rules": {
            "user_content": "the task's prompt (tasks[task]; qa: {question} replaced by the "
                            "question) or a custom prompt; it must contain <SpeechHere> exactly "
                            "once, else it is refused",
            "prompt_text": "prompt_template with {system} -> system and {prompt} -> user_content "
                           "(= the LLM's chat rule with the default system turn)",
            "split": "prompt_text is split at its one <SpeechHere>: before, after (verbatim, no "
                     "trimming); the placeholder's own characters are removed and never "
                     "tokenized",
            "tokens": "ids_before = tokenizer.json encode(before), ids_after = encode(after), "
                      "add_special_tokens = false",
            "inputs_embeds": "[embed_tokens[ids_before]; audio_embeds[0] (n_audio_tokens rows); "
                             "embed_tokens[ids_after]] -> [1, n, hidden], n = len(ids_before) "
                             "+ n_audio_tokens + len(ids_after)",
            "first_step": "attention_mask ones [1, n], position_ids [[0..n-1]], zero-length "
                          "past; the audio rows take positions like any token",
            "later_steps": "inputs_embeds = embed_tokens[previous token] [1, 1, hidden]; "
                           "attention_mask ones [1, n+t]; position_ids [[n+t-1]] for the t-th "
                           "generated step (t = 1, 2, ...); present.* fed back as past",
        },
    }


def cmd_projector(args) -> None:
    import torch
    from tokenizers import Tokenizer
    set_threads(args.threads)
    for f in (ONNX_DIR / "llm.json", WHISPER_ONNX / "whisper.json", WHISPER_ONNX / "encoder.onnx"):
        if not f.exists():
            die(f"{f} is missing; run `llm_export.py export` and `whisper_ct2.py export` first")
    llm_cfg = json.loads((ONNX_DIR / "llm.json").read_text())
    wcfg = json.loads((WHISPER_ONNX / "whisper.json").read_text())
    enc_dim, n_frames = wcfg["d_model"], wcfg["n_audio_ctx"]
    proj = make_projector(enc_dim, llm_cfg["hidden_size"], n_frames=n_frames)
    print(f"projector: {n_frames} x {enc_dim} -> {proj.n_tokens} x {llm_cfg['hidden_size']} "
          f"(window {WINDOW}, stride {STRIDE}), {sum(p.numel() for p in proj.parameters())} "
          f"parameters, UNTRAINED (seed {SEED})")
    AUDIO_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".audio-llm-", dir=AUDIO_DIR.parent))
    os.chmod(tmp, 0o755)
    export_projector(proj, tmp, n_frames)
    rel = lambda p: os.path.relpath(p, AUDIO_DIR)
    cfg = audio_llm_config(
        "audio-llm: Whisper tiny.en encoder + untrained projector + SmolLM2-135M-Instruct",
        rel(WHISPER_ONNX / "encoder.onnx"), rel(WHISPER_ONNX / "whisper.json"), enc_dim,
        n_frames, rel(ONNX_DIR), llm_cfg, proj,
        "points: encoder and LLM files stay where tools/whisper_ct2.py and tools/llm_export.py "
        "put them and are referenced by relative paths; only projector.onnx and this file "
        "live here")
    (tmp / "audio_llm.json").write_text(json.dumps(cfg, indent=2) + "\n")
    replace_dir(tmp, AUDIO_DIR)
    for f in sorted(AUDIO_DIR.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.2f} MB")
    print(f"  encoder -> {cfg['encoder']['file']}, llm -> {cfg['llm']['dir']}")
    describe_onnx(AUDIO_DIR / "projector.onnx")

    # end to end once with onnxruntime (plumbing): real clip, ASR prompt
    clip = ROOT / ".cache/speech/allison/en/all-circuits-busy-now.wav"
    r = run_audio_prompt(AUDIO_DIR, cfg, clip, "asr", None, args.threads, 24, proj=proj)
    tok = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    print(f"projector ORT vs torch max abs {r['proj_diff']:.2e}; audio embeds rms "
          f"{r['audio_rms']:.4f} vs text embedding rows rms {r['text_rms']:.4f}")
    print(f"audio prompt ({clip.name}, asr): {len(r['ids_before'])} + {r['n_audio']} + "
          f"{len(r['ids_after'])} embeddings -> {r['gen']['tokens']} "
          f"{tok.decode(r['gen']['tokens'], skip_special_tokens=False)!r} (untrained projector)")


def run_audio_prompt(folder: Path, cfg: dict, wav: Path, task: str, question, threads: int,
                     max_new: int, proj=None) -> dict:
    """The audio-LLM path with onnxruntime, following audio_llm.json's rules."""
    import torch
    from tokenizers import Tokenizer
    enc_path = (folder / cfg["encoder"]["file"]).resolve()
    llm_dir = (folder / cfg["llm"]["dir"]).resolve()
    wcfg = json.loads((folder / cfg["encoder"]["config"]).read_text())
    ol = OrtLlm(llm_dir, threads)
    enc = ort_session(enc_path, threads)
    ps = ort_session(folder / cfg["projector"]["file"], threads)
    samples = read_wav(wav)
    feats = log_mel(feature_extractor(wcfg["n_mels"]), samples)
    states = enc.run(None, {"input_features": feats})[0]
    pc = cfg["projector"]
    if pc.get("trim_to_audio", False):
        n_tok = trim_tokens(len(samples), pc["window"], pc["stride"])
        states = np.ascontiguousarray(states[:, :trim_states(n_tok, pc["window"], pc["stride"])])
    audio = ps.run(None, {"encoder_states": states})[0]
    proj_diff = None
    if proj is not None:
        with torch.no_grad():
            proj_diff = float(np.abs(proj(torch.from_numpy(states)).numpy() - audio).max())
    user = cfg["tasks"][task]
    if question is not None:
        user = user.replace("{question}", question)
    if user.count(SPEECH) != 1:
        die(f"prompt {user!r} must contain {SPEECH} exactly once")
    text = cfg["prompt_template"].replace("{system}", cfg["system"]).replace("{prompt}", user)
    before, after = text.split(SPEECH)
    tok = Tokenizer.from_file(str(llm_dir / ol.cfg["files"]["tokenizer"]))
    ids_b = tok.encode(before, add_special_tokens=False).ids
    ids_a = tok.encode(after, add_special_tokens=False).ids
    pe = np.concatenate([ol.embed(ids_b), audio[0], ol.embed(ids_a)])
    gen = ol.greedy(pe, max_new)
    return dict(samples=samples, states=states, audio=audio, proj_diff=proj_diff, user=user,
                text=text, before=before, after=after, ids_before=ids_b, ids_after=ids_a,
                n_audio=audio.shape[1], embeds=pe, gen=gen, ol=ol,
                audio_rms=float(np.sqrt((audio.astype(np.float64) ** 2).mean())),
                text_rms=float(np.sqrt((ol.table.astype(np.float64) ** 2).mean())))
