"""Reproductions of published results: one small package per paper, each with a `reproduce(context)`.

Each paper's package splits the same way: ``settings`` (the paper's set-up and our budgets),
``measurement`` (the runs and what is read from them), ``comparison`` (the paper's numbers or
shapes beside ours) and ``figures`` (the PNGs); its ``__init__`` runs them in that order.
`gradientflow reproduce NAME` looks NAME up in `registry.REPRODUCTIONS`, runs it and writes the
Markdown page with `page.write_page`.

The framework's names (`ReproductionContext`, ...) load torch, so they are imported on first use:
``--help`` reads only the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import REPRODUCTIONS, reproduction

if TYPE_CHECKING:
    from .base import Comparison, ReproductionContext, ReproductionResult, choose_mnist

__all__ = ["REPRODUCTIONS", "Comparison", "ReproductionContext", "ReproductionResult", "choose_mnist", "reproduction"]

_FROM_BASE = ("Comparison", "ReproductionContext", "ReproductionResult", "choose_mnist")


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
