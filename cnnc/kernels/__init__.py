"""Kernels computing the ops of the IR: reference (oracle) and fast NumPy versions."""
