#!/usr/bin/env python3
"""Quantizes the ECAPA-TDNN fixture with ONNX Runtime's own static quantizer (QDQ format).

    make_ort_qdq_fixture.py [--model fixtures/models/ecapa_auralis.onnx]
                            [--out fixtures/models/ecapa_auralis.ort_qdq.onnx]

Run with the torch venv (onnx, onnxruntime with `onnxruntime.quantization`, numpy). The result is
a real third-party QDQ model for `exporter::inspect::check_qdq` tests: ORT's quantizer places
Q/DQ the way ORT's CPU kernels like it, which breaks several TensorRT explicit-quantization rules
(asymmetric activations with non-zero zero points, uint8 activations, Q/DQ on Conv outputs).

Settings are ORT's defaults (QDQ format, MinMax calibration, per-tensor, symmetric int8 weights,
asymmetric activations) except `activation_type`, which is set to QUInt8: ORT 1.31 defaults to
QInt8 activations, and the classic uint8 activation setting is the one TensorRT cannot build.
No `quant_pre_process` step is run. Calibration: 8 deterministic inputs (numpy seed 0) of
shape [1, frames, 80] with frames in 120..300, values ~ N(0, 1) + a per-bin offset that mimics
log-mel fbank levels. The output is deterministic for a given onnxruntime version (1.31.1).
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FbankLikeReader(CalibrationDataReader):
    def __init__(self, input_name, count=8, seed=0):
        rng = np.random.default_rng(seed)
        offsets = np.linspace(-2.0, 6.0, 80, dtype=np.float32)
        self.items = []
        for i in range(count):
            frames = 120 + 25 * i
            x = rng.standard_normal((1, frames, 80), dtype=np.float32) + offsets
            self.items.append({input_name: x.astype(np.float32)})
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.items):
            return None
        self.pos += 1
        return self.items[self.pos - 1]

    def rewind(self):
        self.pos = 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "fixtures/models/ecapa_auralis.onnx"))
    ap.add_argument("--out", default=os.path.join(ROOT, "fixtures/models/ecapa_auralis.ort_qdq.onnx"))
    args = ap.parse_args()

    model = onnx.load(args.model)
    input_name = model.graph.input[0].name
    quantize_static(
        args.model,
        args.out,
        FbankLikeReader(input_name),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    q = onnx.load(args.out)
    ops = {}
    for n in q.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {size / 1e6:.2f} MB, {len(q.graph.node)} nodes, "
          f"QuantizeLinear {ops.get('QuantizeLinear', 0)}, "
          f"DequantizeLinear {ops.get('DequantizeLinear', 0)}")
    if size > 4_000_000:
        sys.exit(f"{args.out} is {size} bytes, over the 4 MB fixture budget")


if __name__ == "__main__":
    main()
