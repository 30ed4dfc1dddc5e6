"""Shared by the modules of tools/llm_export.py (audio-LLM tooling): paths, the chat format
(ChatML as SmolLM2's template renders it, checked against the tokenizer's own template),
the check prompts, the audio-LLM task prompts and the untrained projector's window.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


CACHE = Path(os.environ.get("VOXQ_CACHE", ROOT / ".cache"))
LLM_DIR = CACHE / "llm" / "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_DIR = LLM_DIR / "hf"
ONNX_DIR = LLM_DIR / "onnx"
REF_DIR = LLM_DIR / "ref"
AUDIO_DIR = CACHE / "llm" / "audio-llm"
WHISPER_ONNX = CACHE / "whisper" / "tiny.en" / "onnx"
FIXTURE_DIR = ROOT / "fixtures" / "audio-llm-tiny-test"
TRIM_FIXTURE_DIR = ROOT / "fixtures" / "audio-llm-tiny-trim"
WHISPER_FIXTURE = ROOT / "fixtures" / "whisper-tiny-test"
OPSET = 17
SEED = 20261121  # LLM fixture weights and every projector init
SPEECH = "<SpeechHere>"

# ChatML as SmolLM2's chat template renders it (checked against the Jinja template in `convert`
# and `export`): [system turn] + user turn + the assistant header.
CHATML = {
    "system_prefix": "<|im_start|>system\n",
    "system_suffix": "<|im_end|>\n",
    "user_prefix": "<|im_start|>user\n",
    "user_suffix": "<|im_end|>\n<|im_start|>assistant\n",
}

CHECK_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a neural network is.",
    "List three colors of the rainbow.",
    "How many legs does a spider have?",
]
CHECK_MAX_NEW = 32

TASKS = {
    "asr": "Transcribe the audio. " + SPEECH,
    "caption": "Describe the audio. " + SPEECH,
    "qa": SPEECH + " {question}",
}
WINDOW, STRIDE = 17, 17


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# chat template
# ---------------------------------------------------------------------------------------------

def chat_info(hf_tok) -> dict:
    """The chat template as plain prefix/suffix strings for one user turn, verified against the
    tokenizer's own Jinja template (with and without a system message)."""
    tmpl = getattr(hf_tok, "chat_template", None)
    if not tmpl:
        die("the tokenizer has no chat template")
    # the default system message the template inserts when the first message is not a system one
    u = "\u2063USER\u2063"
    no_sys = hf_tok.apply_chat_template([{"role": "user", "content": u}], tokenize=False,
                                        add_generation_prompt=True)
    head = no_sys.split(u)[0]
    c = CHATML
    if not (head.startswith(c["system_prefix"])
            and head.endswith(c["system_suffix"] + c["user_prefix"])):
        die(f"the chat template is not the expected ChatML form: {no_sys!r}")
    default_system = head[len(c["system_prefix"]):-len(c["system_suffix"] + c["user_prefix"])]
    for system in (None, "Be brief."):
        for user in ("Hi", "What is 2+2?"):
            msgs = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": user}]
            want = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            got = render_chat(dict(c, default_system=default_system), user, system)
            if want != got:
                die(f"chat prefix/suffix do not reproduce the template: {want!r} vs {got!r}")
    return dict(c, default_system=default_system)


def render_chat(chat: dict, user: str, system: str | None = None) -> str:
    """system_prefix + (system or default_system) + system_suffix + user_prefix + user +
    user_suffix (SmolLM2's template always has a system turn; default when none is given)."""
    s = chat["default_system"] if system is None else system
    return (chat["system_prefix"] + s + chat["system_suffix"] + chat["user_prefix"] + user
            + chat["user_suffix"])
