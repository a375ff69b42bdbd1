"""Which modules of a model the probe watches: activations (their input) and modules with a weight."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn

from ..errors import ProbeError
from .activations import SaturationRule, activation_name, rule_for_module

__all__ = ["select_modules"]


def select_modules(
    model: nn.Module, layers: Iterable[str | type[nn.Module]] | None, saturation_eps: float
) -> tuple[dict[nn.Module, tuple[str, SaturationRule]], dict[nn.Module, str]]:
    """Return (activation module -> (qualified name, saturation rule), weight module -> qualified name).

    `layers` (None: every module) keeps modules whose name matches a pattern (fnmatch) or whose
    type is listed. A pattern that matches nothing, or an entry that is neither, raises ProbeError.
    """
    named = [(name or "(root)", module) for name, module in model.named_modules()]
    patterns = [entry for entry in (layers or []) if isinstance(entry, str)]
    types = tuple(entry for entry in (layers or []) if isinstance(entry, type))
    bad = [entry for entry in (layers or []) if not isinstance(entry, (str, type))]
    if bad:
        raise ProbeError(f"layers entries must be names, patterns or module types, got {bad!r}")
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            names = ", ".join(name for name, _ in named[:40])
            raise ProbeError(f"layers: {pattern!r} matches no module of the model; its modules are: {names}")

    def chosen(name: str, module: nn.Module) -> bool:
        if layers is None:
            return True
        return any(fnmatch.fnmatchcase(name, p) for p in patterns) or (bool(types) and isinstance(module, types))

    activations: dict[nn.Module, tuple[str, SaturationRule]] = {}
    weights: dict[nn.Module, str] = {}
    for name, module in named:
        if not chosen(name, module):
            continue
        if activation_name(module) is not None:
            activations[module] = (name, rule_for_module(module, saturation_eps))
        elif isinstance(getattr(module, "weight", None), nn.Parameter):
            weights[module] = name
    return activations, weights
