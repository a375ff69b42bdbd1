"""Every activation gradientflow knows by name, and its family: one table for the whole package.

The family decides which problem an activation can show: a *bounded* one (sigmoid, tanh) saturates
when most inputs sit in its flat tails; a *ReLU-like* one is inactive on about half its inputs
when healthy and is a problem only when units never fire (dead); *linear* has neither. Spec
validation, the probe's saturation rules and the verdicts all read this table. Standard library
only (layer 1), so any layer can.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Family",
    "ACTIVATION_FAMILIES",
    "ACTIVATION_NAMES",
    "SPEC_ACTIVATIONS",
    "BOUNDED",
    "RELU_LIKE",
    "family_of",
]

Family = Literal["bounded", "relu_like", "linear"]

#: name -> (family, whether an experiment spec can ask for it: `models` builds those networks).
_TABLE: dict[str, tuple[Family, bool]] = {
    "sigmoid": ("bounded", True),
    "tanh": ("bounded", True),
    "hardtanh": ("bounded", False),
    "hardsigmoid": ("bounded", False),
    "logsigmoid": ("bounded", False),  # bounded above: its flat tail is large positive inputs
    "relu": ("relu_like", True),
    "relu6": ("relu_like", False),
    "leaky_relu": ("relu_like", True),
    "elu": ("relu_like", True),
    "gelu": ("relu_like", True),
    "silu": ("relu_like", True),
    "mish": ("relu_like", False),
    "selu": ("relu_like", False),
    "celu": ("relu_like", False),
    "gelu_tanh": ("relu_like", False),  # GELU's tanh approximation (GPT-2's NewGELU)
    "quick_gelu": ("relu_like", False),  # x * sigmoid(1.702 x) (CLIP's QuickGELU)
    "hardswish": ("relu_like", False),
    "relu_squared": ("relu_like", False),
    "softplus": ("relu_like", True),
    "linear": ("linear", True),
}

#: Activation name -> its family.
ACTIVATION_FAMILIES: dict[str, Family] = {name: family for name, (family, _) in _TABLE.items()}
#: Every name a probe, a tap or a custom module may use, sorted.
ACTIVATION_NAMES: tuple[str, ...] = tuple(sorted(_TABLE))
#: The names an experiment spec's ``model.activation`` accepts, in the table's order.
SPEC_ACTIVATIONS: tuple[str, ...] = tuple(name for name, (_, buildable) in _TABLE.items() if buildable)
#: Activations whose flat tails are a problem when most inputs sit there.
BOUNDED: frozenset[str] = frozenset(n for n, f in ACTIVATION_FAMILIES.items() if f == "bounded")
#: Activations that are inactive on half their inputs when healthy; a problem only when units never fire.
RELU_LIKE: frozenset[str] = frozenset(n for n, f in ACTIVATION_FAMILIES.items() if f == "relu_like")


def family_of(name: str) -> Family | None:
    """Return the family of activation `name` ('bounded', 'relu_like' or 'linear'); None if unknown."""
    return ACTIVATION_FAMILIES.get(name)
