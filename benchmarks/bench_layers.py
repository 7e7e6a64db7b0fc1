"""One-layer benchmark: each NumPy convolution algorithm beside ONNX Runtime's Conv, same inputs.

For the 3x3 stride-1 shapes of VGG/ResNet it times direct convolution (`conv`), Winograd
(`winograd_conv`) and ORT; for MobileNetV2's depthwise shapes the NCHW tap loop, the
channels-last one and ORT. This is the measurement behind the dispatch thresholds in
cnnc/passes/winograd.py and numpy_kernels._conv_depthwise (docs/kernels.md).

    python benchmarks/bench_layers.py --threads 1 --repeat 7
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_cpu import _timed  # noqa: E402  (the sibling script, found by the path above)

DENSE = [  # (batch, channels, filters, size): 3x3, stride 1, pad 1
    (1, 64, 64, 56), (8, 64, 64, 56), (1, 128, 128, 28), (8, 128, 128, 28), (1, 256, 256, 56),
    (8, 256, 256, 56), (1, 256, 256, 14), (1, 512, 512, 14), (8, 512, 512, 14), (1, 512, 512, 7),
    (8, 512, 512, 7), (1, 64, 64, 224), (1, 32, 32, 16), (1, 16, 16, 56),
]
DEPTHWISE = [  # (batch, channels, size, stride): 3x3, pad 1, MobileNetV2's layers
    (1, 32, 112, 1), (1, 96, 112, 2), (1, 144, 56, 1), (1, 144, 56, 2), (1, 192, 28, 1), (1, 192, 28, 2),
    (1, 384, 14, 1), (1, 576, 14, 1), (1, 576, 14, 2), (1, 960, 7, 1), (8, 144, 56, 1), (8, 960, 7, 1),
]


def _ms(fn: Callable[[], object], repeat: int) -> float:
    """Median ms of `repeat` calls after one warm-up (bench_cpu's timer)."""
    return statistics.median(_timed(fn, repeat, 1))


def _ort_conv(x, w, stride: int, groups: int, threads: int) -> Callable[[], object] | None:
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[stride, stride], group=groups)
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    from cnnc.kernels import numpy_kernels as K
    from cnnc.passes.derived import RULES

    rng = np.random.default_rng(0)
    print(f"threads={args.threads}, median of {args.repeat} after one warm-up, ms")
    print("| 3x3 s1 layer | direct | Winograd | ORT | direct / Winograd | Winograd / ORT |")
    print("|---|---|---|---|---|---|")
    for n, c, o, size in DENSE:
        x = rng.standard_normal((n, c, size, size), dtype=np.float32)
        w = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        u = RULES["winograd_weight"](w.astype(np.float64)).astype(np.float32)
        direct = _ms(partial(K.conv, x, w, None, stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1,
                             out_size=(size, size)), args.repeat)
        wino = _ms(partial(K.winograd_conv, x, u, None, pads=(1, 1, 1, 1), out_size=(size, size)), args.repeat)
        peer = _ort_conv(x, w, 1, 1, args.threads)
        ort_ms = _ms(peer, args.repeat) if peer else float("nan")
        print(f"| n{n} {c}→{o} {size}×{size} | {direct:.2f} | {wino:.2f} | {ort_ms:.2f} | {direct / wino:.2f} | "
              f"{wino / ort_ms:.2f} |")
    print()
    print("| depthwise 3x3 layer | NCHW taps | channels-last | ORT | NCHW / channels-last | best / ORT |")
    print("|---|---|---|---|---|---|")
    for n, c, size, stride in DEPTHWISE:
        x = rng.standard_normal((n, c, size, size), dtype=np.float32)
        w = rng.standard_normal((c, 1, 3, 3), dtype=np.float32)
        out = (size - 1) // stride + 1
        pad = size + 2
        layer = (x, w, None, stride, stride, (1, 1, 1, 1), 1, 1, out, out, pad, pad)
        nchw = _ms(partial(K._conv_depthwise_nchw, *layer), args.repeat)
        # channels-last in and out, as the channels_last pass lays MobileNetV2's values out
        nhwc = _ms(partial(K._depthwise_channels_last, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, None,
                           (stride, stride), (1, 1, 1, 1), (1, 1), (out, out), "nhwc", "nhwc"), args.repeat)
        peer = _ort_conv(x, w, stride, c, args.threads)
        ort_ms = _ms(peer, args.repeat) if peer else float("nan")
        print(f"| n{n} c{c} {size}×{size} s{stride} | {nchw:.2f} | {nhwc:.2f} | {ort_ms:.2f} | {nchw / nhwc:.2f} | "
              f"{min(nchw, nhwc) / ort_ms:.2f} |")


if __name__ == "__main__":
    main()
