"""Optimization passes over the IR, one module per pass family, run by `manager.optimize`.

Importing this package imports every module in it (in name order), so a pass module registers
its passes (`manager.register`) just by being here: there is no list of passes to keep.
"""
import importlib
import pkgutil

from .manager import PASSES, optimize, pass_order


def _import_modules() -> None:
    """Import each module of this package, sorted by name so registration order never varies."""
    for name in sorted(module.name for module in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{name}")


_import_modules()
pass_order()  # a registration that names no pass, or leaves the order open, fails here at import

__all__ = ["PASSES", "optimize", "pass_order"]
