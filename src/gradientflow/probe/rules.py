"""Where each activation saturates: one `SaturationRule` per activation name.

A pre-activation element is *saturated* when the activation's derivative there is below
``saturation_eps`` times that activation's largest derivative (absolute values). For most
activations the saturated set is a pair of tails, so the test is one or two comparisons
instead of evaluating the derivative: those thresholds are solved in closed form. For GELU,
SiLU, Mish, Hardswish (whose derivative also crosses zero) the set is a tail and a band: its
boundaries are solved once, numerically, and a step compares (about 2.3x faster than evaluating
the derivative on a 1024 x 1536 tensor, same elements).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ProbeError

__all__ = ["SaturationRule", "ACTIVATION_NAMES", "rule_for_name"]

Mask = Callable[[torch.Tensor], torch.Tensor]
_SELU_ALPHA = 1.6732632423543772848170429916717


@dataclass(frozen=True)
class SaturationRule:
    """How to find saturated elements of one activation's input.

    `lower`/`upper`: elements strictly below `lower` or strictly above `upper` are saturated
    (None: that tail does not saturate). `bands`: open intervals saturated as well, where the
    derivative crosses zero (GELU, SiLU, Mish, Hardswish: solved once, numerically). `derivative`
    and `max_derivative` are evaluated instead when given.
    """

    name: str
    lower: float | None = None
    upper: float | None = None
    inclusive: bool = False  # the tails include their bounds: ReLU's derivative is 0 at exactly 0 in PyTorch
    derivative: Callable[[torch.Tensor], torch.Tensor] | None = None
    max_derivative: float = 1.0
    eps: float = 0.05
    bands: tuple[tuple[float, float], ...] = ()

    @property
    def comparisons_only(self) -> bool:
        """True when the saturated set is two tails and at most one band (what the C pass computes)."""
        return self.derivative is None and len(self.bands) <= 1

    def saturated(self, x: torch.Tensor) -> torch.Tensor:
        """Return a bool tensor shaped like `x`: True where the element is saturated."""
        if self.derivative is not None:
            return self.derivative(x).abs() < self.eps * self.max_derivative
        if self.bands:
            mask = self._tails(x)
            for low, high in self.bands:
                mask = mask | ((x > low) & (x < high))
            return mask
        return self._tails(x)

    def _tails(self, x: torch.Tensor) -> torch.Tensor:
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


def _relu_rule(eps: float, name: str = "relu") -> SaturationRule:
    return SaturationRule(name, lower=0.0, inclusive=True, eps=eps)


def _leaky_relu_rule(eps: float, negative_slope: float = 0.01) -> SaturationRule:
    if abs(negative_slope) < eps:  # the negative side's derivative is below the threshold
        return SaturationRule("leaky_relu", lower=0.0, inclusive=True, eps=eps)
    return SaturationRule("leaky_relu", eps=eps)


def _elu_derivative(alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0)))


def _elu_rule(eps: float, alpha: float = 1.0, name: str = "elu") -> SaturationRule:
    # ELU'(x) = alpha * exp(x) for x < 0, 1 above; the largest derivative is max(1, alpha)
    top = max(1.0, alpha)
    if eps * top > 1.0:  # the positive side saturates too: a band around 0 is not a pair of tails
        return SaturationRule(name, derivative=_elu_derivative(alpha), max_derivative=top, eps=eps)
    return SaturationRule(name, lower=math.log(eps * top / alpha), max_derivative=top, eps=eps)


def _celu_rule(eps: float, alpha: float = 1.0) -> SaturationRule:
    # CELU'(x) = exp(x / alpha) for x < 0, 1 above
    return SaturationRule("celu", lower=alpha * math.log(eps), eps=eps)


def _softplus_rule(eps: float, beta: float = 1.0) -> SaturationRule:
    # softplus'(x) = sigmoid(beta x) < eps  =>  x < logit(eps) / beta
    return SaturationRule("softplus", lower=math.log(eps / (1.0 - eps)) / beta, eps=eps)


def _logsigmoid_rule(eps: float) -> SaturationRule:
    # logsigmoid'(x) = sigmoid(-x), largest (1) far left: saturated where sigmoid(-x) < eps
    return SaturationRule("logsigmoid", upper=math.log((1.0 - eps) / eps), eps=eps)


def _hardtanh_rule(eps: float, min_val: float = -1.0, max_val: float = 1.0, name: str = "hardtanh") -> SaturationRule:
    # PyTorch's backward passes the gradient only strictly inside (min_val, max_val)
    return SaturationRule(name, lower=min_val, upper=max_val, inclusive=True, eps=eps)


def _linear_rule(eps: float) -> SaturationRule:
    return SaturationRule("linear", eps=eps)


def _gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _gelu_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    # d/dx 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    c = math.sqrt(2.0 / math.pi)
    t = torch.tanh(c * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)


def _quick_gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(1.702 * x)
    return s + 1.702 * x * s * (1.0 - s)


def _silu_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _mish_derivative(x: torch.Tensor) -> torch.Tensor:
    sp = torch.nn.functional.softplus(x)
    tsp = torch.tanh(sp)
    return tsp + x * torch.sigmoid(x) * (1.0 - tsp * tsp)


def _hardswish_derivative(x: torch.Tensor) -> torch.Tensor:
    # PyTorch's backward: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above; |x/3 + 1/2| is small in a
    # band around -1.5 too, so the saturated set is not a pair of tails
    return torch.where(x < -3, torch.zeros_like(x), torch.where(x <= 3, x / 3 + 0.5, torch.ones_like(x)))


def _max_abs(derivative: Callable[[torch.Tensor], torch.Tensor]) -> float:
    grid = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)
    return float(derivative(grid).abs().max())


def _derivative_rule(name: str, derivative: Callable[[torch.Tensor], torch.Tensor], eps: float) -> SaturationRule:
    """The rule of an activation whose saturated set is not known in closed form: its boundaries,
    found once on a fine grid and refined by bisection, so that each step only compares."""
    top = _max_abs(derivative)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return derivative(x).abs() < eps * top

    grid = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)
    inside = flat(grid)
    edges = [
        _bisect(flat, float(grid[i]), float(grid[i + 1])) for i in torch.nonzero(inside[1:] != inside[:-1]).flatten()
    ]
    # the saturated set's boundaries in order; beyond the grid each end stays as it is at the grid's end
    boundaries = ([-math.inf] if bool(inside[0]) else []) + edges + ([math.inf] if bool(inside[-1]) else [])
    intervals = list(zip(boundaries[0::2], boundaries[1::2]))
    lower = next((high for low, high in intervals if low == -math.inf), None)
    upper = next((low for low, high in intervals if high == math.inf), None)
    bands = tuple((low, high) for low, high in intervals if math.isfinite(low) and math.isfinite(high))
    return SaturationRule(name, lower=lower, upper=upper, max_derivative=top, eps=eps, bands=bands)


def _bisect(inside: Callable[[torch.Tensor], torch.Tensor], a: float, b: float) -> float:
    """The point between `a` and `b` where `inside` changes, to float64 precision."""
    left = bool(inside(torch.tensor([a], dtype=torch.float64)))
    for _ in range(60):
        middle = (a + b) / 2
        if bool(inside(torch.tensor([middle], dtype=torch.float64))) == left:
            a = middle
        else:
            b = middle
    return (a + b) / 2


_NAMED_RULES: dict[str, Callable[..., SaturationRule]] = {
    "sigmoid": _sigmoid_rule,
    "tanh": _tanh_rule,
    "relu": _relu_rule,
    "relu_squared": lambda eps: _relu_rule(eps, "relu_squared"),
    "leaky_relu": _leaky_relu_rule,
    "elu": _elu_rule,
    "selu": lambda eps: _elu_rule(eps, _SELU_ALPHA, "selu"),  # SELU is a scaled ELU: the scale cancels
    "celu": _celu_rule,
    "softplus": _softplus_rule,
    "logsigmoid": _logsigmoid_rule,
    "hardtanh": _hardtanh_rule,
    "relu6": lambda eps: _hardtanh_rule(eps, 0.0, 6.0, "relu6"),
    "hardsigmoid": lambda eps: _hardtanh_rule(eps, -3.0, 3.0, "hardsigmoid"),
    "linear": _linear_rule,
    "gelu": lambda eps: _derivative_rule("gelu", _gelu_derivative, eps),
    "gelu_tanh": lambda eps: _derivative_rule("gelu_tanh", _gelu_tanh_derivative, eps),
    "quick_gelu": lambda eps: _derivative_rule("quick_gelu", _quick_gelu_derivative, eps),
    "silu": lambda eps: _derivative_rule("silu", _silu_derivative, eps),
    "mish": lambda eps: _derivative_rule("mish", _mish_derivative, eps),
    "hardswish": lambda eps: _derivative_rule("hardswish", _hardswish_derivative, eps),
}

#: Activation names a tap, a registration or a custom module may use.
ACTIVATION_NAMES: tuple[str, ...] = tuple(sorted(_NAMED_RULES))


@functools.lru_cache(maxsize=256)
def _cached_rule(name: str, eps: float, params: tuple[tuple[str, float], ...]) -> SaturationRule:
    return _NAMED_RULES[name](eps, **dict(params))


def rule_for_name(name: str, eps: float, **params: float) -> SaturationRule:
    """Return the saturation rule of the activation called `name` (see ACTIVATION_NAMES).

    `params` are the activation's own parameters where it has them: ``negative_slope``
    (leaky_relu), ``alpha`` (elu, celu), ``beta`` (softplus), ``min_val``/``max_val`` (hardtanh).
    Rules are made once per (name, eps, params) and reused.
    """
    if name not in _NAMED_RULES:
        raise ProbeError(f"activation {name!r} is not known; use one of {', '.join(ACTIVATION_NAMES)}")
    try:
        return _cached_rule(name, float(eps), tuple(sorted((k, float(v)) for k, v in params.items())))
    except TypeError as error:
        raise ProbeError(f"activation {name!r} takes no parameter among {sorted(params)}: {error}") from None
