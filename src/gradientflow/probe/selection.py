"""The role of each module of a model in the probe's table, decided once when the probe is made.

An activation module gives a row about its input; a module with a weight gives a weight row
(kind ``norm`` for norm layers); functional activations get their rows while a step runs,
named after the module that called them (see capture.py). `layers` narrows all of these.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from ..errors import ProbeError
from .activations import SaturationRule, activation_name, is_norm, rule_for_module

__all__ = ["Role", "Selection", "select_modules", "ROOT"]

ROOT = "(root)"
#: Layers whose output keeps its units along dimension 1 (channels); every other layer with a
#: weight (Linear, Embedding, LayerNorm, RMSNorm, HF's Conv1D, ...) keeps them along the last one.
_CHANNELS_FIRST: tuple[type[nn.Module], ...] = (_ConvNd, _NormBase, nn.GroupNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class Role:
    """What one module is to the probe.

    `kind`: ``activation``, ``norm`` or ``weight`` (a row of its own), or None (no row).
    `chosen`: `layers` admits it (and the functional activations it calls). `units`: the
    dimension of its output that indexes units when it has a weight (1 or -1), else None.
    `weightless_leaf`: a module without children or weight, a candidate activation to name
    when a step finds none.
    """

    name: str
    module_type: str
    kind: str | None
    chosen: bool
    rule: SaturationRule | None = None
    inplace: bool = False
    batchnorm: bool = False
    units: int | None = None
    weightless_leaf: bool = False


@dataclass(frozen=True)
class Selection:
    """Every module's role, and the `layers` patterns functional rows are matched against."""

    roles: dict[nn.Module, Role]
    patterns: tuple[str, ...]
    everything: bool

    def admits(self, owner: Role, row: str) -> bool:
        """Return True if a functional activation row `row` applied inside `owner` is recorded."""
        return self.everything or owner.chosen or any(fnmatch.fnmatchcase(row, p) for p in self.patterns)

    def weights(self) -> dict[nn.Module, str]:
        """Return module -> qualified name of every chosen module with a weight row, in model order."""
        return {m: r.name for m, r in self.roles.items() if r.chosen and r.kind in ("weight", "norm")}


def select_modules(
    model: nn.Module, layers: Iterable[str | type[nn.Module]] | None, saturation_eps: float
) -> Selection:
    """Return the role of every module of `model`.

    `layers` (None: every module) keeps modules whose name matches a pattern (fnmatch) or whose
    type is listed; a pattern with a colon names functional rows (``"block1:relu*"``). A pattern
    that matches nothing, or an entry that is neither, raises ProbeError.
    """
    entries = list(layers) if layers is not None else None
    named = [(name or ROOT, module) for name, module in model.named_modules()]
    patterns = tuple(entry for entry in (entries or []) if isinstance(entry, str))
    types = tuple(entry for entry in (entries or []) if isinstance(entry, type))
    bad = [entry for entry in (entries or []) if not isinstance(entry, (str, type))]
    if bad:
        raise ProbeError(f"layers entries must be names, patterns or module types, got {bad!r}")
    for pattern in patterns:
        if ":" not in pattern and not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            names = ", ".join(name for name, _ in named[:40])
            raise ProbeError(f"layers: {pattern!r} matches no module of the model; its modules are: {names}")

    def chosen(name: str, module: nn.Module) -> bool:
        if entries is None:
            return True
        return any(fnmatch.fnmatchcase(name, p) for p in patterns) or (bool(types) and isinstance(module, types))

    roles = {module: _role(name, module, chosen(name, module), saturation_eps) for name, module in named}
    return Selection(roles, patterns, entries is None)


def _role(name: str, module: nn.Module, chosen: bool, eps: float) -> Role:
    module_type = type(module).__name__
    has_weight = isinstance(getattr(module, "weight", None), nn.Parameter)
    units = (1 if isinstance(module, _CHANNELS_FIRST) else -1) if has_weight else None
    if activation_name(module) is not None:
        rule = rule_for_module(module, eps)
        return Role(name, module_type, "activation", chosen, rule, bool(getattr(module, "inplace", False)))
    if has_weight:
        kind = "norm" if is_norm(module) else "weight"
        return Role(name, module_type, kind, chosen, batchnorm=isinstance(module, _NormBase), units=units)
    # torch's own weight-less classes (Dropout, Flatten, pooling, ...) are known not to be activations
    leaf = (
        not type(module).__module__.startswith("torch.")
        and not any(True for _ in module.children())
        and not any(True for _ in module.parameters(recurse=False))
    )
    return Role(name, module_type, None, chosen, weightless_leaf=leaf)
