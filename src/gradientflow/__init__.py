"""gradientflow: do the gradients in this network vanish or explode, why, and what does BN change?

The heavy parts (torch) load on first use, so ``import gradientflow.store`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Probe", "tap", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Probe", "tap"):
        from . import probe

        return getattr(probe, name)
    raise AttributeError(f"module 'gradientflow' has no attribute {name!r}")
