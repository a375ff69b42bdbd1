"""gradientflow: do the gradients in this network vanish or explode, why, and what does BN change?

The heavy parts (torch) load on first use, so ``import gradientflow.store`` stays light. Type
checkers and IDEs see the public names through the imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnose import watch
    from .probe import Probe, register_activation, register_norm, tap

# The one place the version is written: pyproject.toml reads it from here (setuptools' dynamic version).
__version__ = "0.1.0"
__all__ = ["Probe", "tap", "register_activation", "register_norm", "watch", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Probe", "tap", "register_activation", "register_norm"):
        from . import probe

        return getattr(probe, name)
    if name == "watch":
        # imported by name: a static import here would make every module that reads
        # gradientflow.__version__ (the runner) depend on diagnose, its sibling layer
        return importlib.import_module("gradientflow.diagnose").watch
    raise AttributeError(f"module 'gradientflow' has no attribute {name!r}")
