"""Reproductions of published results: one module per paper, each a `reproduce(context)` function.

`gradientflow reproduce NAME` looks NAME up in `REPRODUCTIONS` (module and function, imported only
when asked for), runs it and writes the Markdown page with `page.write_page`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ...errors import GradientflowError
from .base import Comparison, ReproductionContext, ReproductionResult, choose_mnist

__all__ = ["REPRODUCTIONS", "Comparison", "ReproductionContext", "ReproductionResult", "choose_mnist", "reproduction"]

# name -> (module in this package, function, one-line description for --help and --list)
REPRODUCTIONS: dict[str, tuple[str, str, str]] = {
    "ioffe2015-fig1": (
        "ioffe2015",
        "reproduce",
        "Ioffe & Szegedy 2015, Figure 1: MNIST 784-100-100-100-10 sigmoid, with and without BN",
    ),
    "glorot2010-fig2": (
        "glorot2010",
        "reproduce",
        "Glorot & Bengio 2010, Figure 2: activations of 4 x 1000 sigmoid layers over training",
    ),
    "yang2019-explosion": (
        "yang2019",
        "reproduce",
        "Yang et al. 2019: gradient explosion at init in deep BN networks against lambda(B)",
    ),
}


def reproduction(name: str) -> Callable[[ReproductionContext], ReproductionResult]:
    """Return the `reproduce` function of reproduction `name`; GradientflowError naming the known ones if unknown."""
    if name not in REPRODUCTIONS:
        known = ", ".join(REPRODUCTIONS)
        raise GradientflowError(f"unknown reproduction {name!r}; choose one of: {known}")
    module_name, function, _ = REPRODUCTIONS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function)
