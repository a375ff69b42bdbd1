"""Activation modules by spec name.

Every activation is its own `nn.Module` instance so forward hooks can find it. The probe names an
activation by its class (nn.Sigmoid -> "sigmoid", ...) or, for classes torch does not have, by a
class attribute ``gradientflow_activation``: any module that carries it is treated as an activation
of that name. Users can mark their own activation modules the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["ACTIVATIONS", "LinearActivation"]


class LinearActivation(nn.Identity):
    """The identity, marked as an activation so a linear network has activation rows to probe."""

    gradientflow_activation = "linear"


#: spec name -> a factory of a fresh module (one instance per layer: hooks are per module).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),  # torch's default slope, stated so it cannot drift
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "linear": LinearActivation,
}
