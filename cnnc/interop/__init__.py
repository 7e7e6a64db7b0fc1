"""Interchange with other frameworks.

- `torch_weights`: PyTorch state dicts in and out of a network, by name (torch optional).
- `onnx_import`: an ONNX model as a readable `.cnn` program plus its parameters.
- `onnx_export`: a network's un-optimized IR as an ONNX model.

Nothing is imported here, so `import cnnc.interop.<module>` loads only that module (and the ONNX
modules import `onnx` only when called).
"""
