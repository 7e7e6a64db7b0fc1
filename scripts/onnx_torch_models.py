"""Export the torchvision-named PyTorch twins with torch.onnx.export, import them with cnnc, and
compare cnnc's outputs with ONNX Runtime's on the same model and input.

    python scripts/onnx_torch_models.py --opsets 13 17

Prints a markdown table (model, opset, imported?, max |cnnc − ORT| relative to ORT's scale, or
the first error) for docs/onnx.md. The twins live in tests/torch_models.py (torchvision itself
cannot be installed beside the CPU torch wheel here); they are exported as PyTorch would export
torchvision's models: dynamo=False, constant folding on.
"""
from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opsets", nargs="+", type=int, default=[13, 17])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from torch_models import TORCHVISION_TWINS, randomize_

    import cnnc

    print("| model | opset | cnnc import | max diff / scale vs ONNX Runtime |")
    print("|---|---|---|---|")
    for name in args.models or sorted(TORCHVISION_TWINS):
        make, _ = TORCHVISION_TWINS[name]
        model = randomize_(make(), seed=1)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, args.size, args.size), np.float32))
        for opset in args.opsets:
            buffer = io.BytesIO()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (x,), buffer, opset_version=opset, dynamo=False,
                                      input_names=["image"], output_names=["logits"])
            except Exception as error:  # torch's exporter, not cnnc: say so and go on
                print(f"| {name} | {opset} | — | torch.onnx.export fails: {str(error).splitlines()[0][:100]} |")
                continue
            data = buffer.getvalue()
            want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
            try:
                imported = cnnc.import_onnx(data)
                got = imported.compile()(x.numpy())
            except cnnc.CnncError as error:
                first = str(error).splitlines()[0]
                print(f"| {name} | {opset} | no | {first[:150]} |")
                continue
            ratio = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-12)
            print(f"| {name} | {opset} | yes | {ratio:.1e} |", flush=True)


if __name__ == "__main__":
    main()
