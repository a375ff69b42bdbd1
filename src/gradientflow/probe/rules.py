"""Which modules are activations, and where each activation saturates.

A pre-activation element is *saturated* when the activation's derivative there is below
``saturation_eps`` times that activation's largest derivative (absolute values). For the
common activations the saturated set is a pair of tails, so the test is one or two
comparisons instead of evaluating the derivative: those thresholds are solved in closed form.
Any module with a ``gradientflow_activation`` attribute (a name) is treated as an activation:
that is how custom activation modules opt in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ProbeError

__all__ = [
    "SaturationRule",
    "ACTIVATION_NAMES",
    "activation_name",
    "rule_for_module",
    "rule_for_name",
]

Mask = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SaturationRule:
    """How to find saturated elements of one activation's input.

    `lower`/`upper`: elements strictly below `lower` or strictly above `upper` are saturated
    (None: that tail does not saturate). `derivative` and `max_derivative` are used instead
    when the saturated set is not a pair of tails (GELU, SiLU, ...).
    """

    name: str
    lower: float | None = None
    upper: float | None = None
    inclusive: bool = False  # the tails include their bounds: ReLU's derivative is 0 at exactly 0 in PyTorch
    derivative: Callable[[torch.Tensor], torch.Tensor] | None = None
    max_derivative: float = 1.0
    eps: float = 0.05

    def saturated(self, x: torch.Tensor) -> torch.Tensor:
        """Return a bool tensor shaped like `x`: True where the element is saturated."""
        if self.derivative is not None:
            return self.derivative(x).abs() < self.eps * self.max_derivative
        if self.lower is not None and self.upper is not None and self.lower == -self.upper:
            return x.abs() >= self.upper if self.inclusive else x.abs() > self.upper
        mask: torch.Tensor | None = None
        if self.lower is not None:
            mask = x <= self.lower if self.inclusive else x < self.lower
        if self.upper is not None:
            upper = x >= self.upper if self.inclusive else x > self.upper
            mask = upper if mask is None else mask | upper
        if mask is None:
            return torch.zeros_like(x, dtype=torch.bool)
        return mask


def _sigmoid_rule(eps: float) -> SaturationRule:
    # sigma'(t) = s(1-s) = eps/4  =>  s = (1 + sqrt(1-eps)) / 2,  t = logit(s)
    s = (1.0 + math.sqrt(1.0 - eps)) / 2.0
    t = math.log(s / (1.0 - s))
    return SaturationRule("sigmoid", lower=-t, upper=t, max_derivative=0.25, eps=eps)


def _tanh_rule(eps: float) -> SaturationRule:
    # tanh'(t) = 1 - tanh(t)^2 = eps  =>  t = atanh(sqrt(1 - eps))
    t = math.atanh(math.sqrt(1.0 - eps))
    return SaturationRule("tanh", lower=-t, upper=t, eps=eps)


def _relu_rule(eps: float) -> SaturationRule:
    return SaturationRule("relu", lower=0.0, inclusive=True, eps=eps)


def _leaky_relu_rule(eps: float, slope: float = 0.01) -> SaturationRule:
    if abs(slope) < eps:  # the negative side's derivative is below the threshold
        return SaturationRule("leaky_relu", lower=0.0, inclusive=True, eps=eps)
    return SaturationRule("leaky_relu", eps=eps)


def _elu_rule(eps: float, alpha: float = 1.0) -> SaturationRule:
    # ELU'(x) = alpha * exp(x) for x < 0; max derivative is max(1, alpha)
    top = max(1.0, alpha)
    return SaturationRule("elu", lower=math.log(eps * top / alpha), max_derivative=top, eps=eps)


def _softplus_rule(eps: float, beta: float = 1.0) -> SaturationRule:
    # softplus'(x) = sigmoid(beta x) < eps  =>  x < logit(eps) / beta
    return SaturationRule("softplus", lower=math.log(eps / (1.0 - eps)) / beta, eps=eps)


def _hardtanh_rule(eps: float, low: float = -1.0, high: float = 1.0, name: str = "hardtanh") -> SaturationRule:
    # PyTorch's backward passes the gradient only strictly inside (low, high)
    return SaturationRule(name, lower=low, upper=high, inclusive=True, eps=eps)


def _linear_rule(eps: float) -> SaturationRule:
    return SaturationRule("linear", eps=eps)


def _gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _silu_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _mish_derivative(x: torch.Tensor) -> torch.Tensor:
    sp = torch.nn.functional.softplus(x)
    tsp = torch.tanh(sp)
    return tsp + x * torch.sigmoid(x) * (1.0 - tsp * tsp)


def _max_abs(derivative: Callable[[torch.Tensor], torch.Tensor]) -> float:
    grid = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)
    return float(derivative(grid).abs().max())


def _derivative_rule(name: str, derivative: Callable[[torch.Tensor], torch.Tensor], eps: float) -> SaturationRule:
    return SaturationRule(name, derivative=derivative, max_derivative=_max_abs(derivative), eps=eps)


_NAMED_RULES: dict[str, Callable[[float], SaturationRule]] = {
    "sigmoid": _sigmoid_rule,
    "tanh": _tanh_rule,
    "relu": _relu_rule,
    "leaky_relu": _leaky_relu_rule,
    "elu": _elu_rule,
    "softplus": _softplus_rule,
    "hardtanh": _hardtanh_rule,
    "relu6": lambda eps: _hardtanh_rule(eps, 0.0, 6.0, "relu6"),
    "linear": _linear_rule,
    "gelu": lambda eps: _derivative_rule("gelu", _gelu_derivative, eps),
    "silu": lambda eps: _derivative_rule("silu", _silu_derivative, eps),
    "mish": lambda eps: _derivative_rule("mish", _mish_derivative, eps),
}

#: Activation names a tap or a custom module may use.
ACTIVATION_NAMES: tuple[str, ...] = tuple(sorted(_NAMED_RULES))

# Module classes recognised without any opt-in. Order matters: ReLU6 subclasses Hardtanh.
_MODULE_NAMES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu6"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.ELU, "elu"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Softplus, "softplus"),
    (nn.Hardtanh, "hardtanh"),
    (nn.Mish, "mish"),
)


def activation_name(module: nn.Module) -> str | None:
    """Return the activation's name if `module` is an activation gradientflow recognises, else None."""
    declared = getattr(module, "gradientflow_activation", None)
    if isinstance(declared, str):
        return declared
    for cls, name in _MODULE_NAMES:
        if isinstance(module, cls):
            return name
    return None


def rule_for_name(name: str, eps: float) -> SaturationRule:
    """Return the saturation rule of the activation called `name` (see ACTIVATION_NAMES)."""
    try:
        factory = _NAMED_RULES[name]
    except KeyError:
        raise ProbeError(f"activation {name!r} is not known; use one of {', '.join(ACTIVATION_NAMES)}") from None
    return factory(eps)


def rule_for_module(module: nn.Module, eps: float) -> SaturationRule:
    """Return the saturation rule of an activation module, reading its parameters (slope, alpha, ...)."""
    name = activation_name(module)
    if name is None:
        raise ProbeError(f"{type(module).__name__} is not an activation module gradientflow recognises")
    if isinstance(module, nn.ReLU6):
        return _hardtanh_rule(eps, 0.0, 6.0, "relu6")
    if isinstance(module, nn.Hardtanh):
        return _hardtanh_rule(eps, float(module.min_val), float(module.max_val))
    if isinstance(module, nn.LeakyReLU):
        return _leaky_relu_rule(eps, float(module.negative_slope))
    if isinstance(module, nn.ELU):
        return _elu_rule(eps, float(module.alpha))
    if isinstance(module, nn.Softplus):
        return _softplus_rule(eps, float(module.beta))
    return rule_for_name(name, eps)
