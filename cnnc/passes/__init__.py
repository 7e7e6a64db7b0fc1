"""Optimization passes over the IR, one module per pass, run by `manager.optimize`.

Importing this package registers every pass.
"""
from . import (  # noqa: F401  (imported for their registration)
    eliminate,
    fcn,
    fold_bn,
    fuse,
    lower,
    memory,
)
from .manager import PASSES, optimize

__all__ = ["PASSES", "optimize"]
