"""The reproductions by name: what `gradientflow reproduce NAME` and its --help offer.

Standard library only, so the command line lists the names without importing torch; a
reproduction's package is imported only when it is run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...errors import GradientflowError

if TYPE_CHECKING:
    from .base import ReproductionContext, ReproductionResult

__all__ = ["REPRODUCTIONS", "reproduction"]

# name -> (package in studies/reproductions, its function, one-line description for --help and --list)
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
    package, function, _ = REPRODUCTIONS[name]
    module = importlib.import_module(f"{__package__}.{package}")
    run: Callable[[ReproductionContext], ReproductionResult] = getattr(module, function)
    return run
