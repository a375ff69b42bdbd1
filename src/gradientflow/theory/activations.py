"""Activation functions and their derivatives as numpy ufunc-style callables, by name.

The names are those of the model registry. Each entry also says whether the function is smooth
at 0 (the Gaussian expectations in `gaussian.py` pick their quadrature rule from this) and, where
one exists, the closed form of E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2] for z ~ N(0, 1), which
`meanfield.py` prefers to any quadrature. Derivatives at a kink follow PyTorch (relu'(0) = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Activation", "ACTIVATIONS", "LEAKY_RELU_SLOPE", "ELU_ALPHA", "get_activation"]

ArrayFunction = Callable[[np.ndarray], np.ndarray]
MomentFunction = Callable[[float], float]

#: Negative slope of leaky_relu: PyTorch's default, which the model registry uses.
LEAKY_RELU_SLOPE = 0.01
#: ELU's alpha: PyTorch's default.
ELU_ALPHA = 1.0

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Activation:
    """One activation: phi, phi', whether both are smooth at 0, and optional closed-form moments.

    `second_moment(q)` is E[phi(sqrt(q) z)^2] and `derivative_second_moment(q)` is
    E[phi'(sqrt(q) z)^2] for z ~ N(0, 1), in squared activation units (None: use quadrature).
    """

    name: str
    function: ArrayFunction
    derivative: ArrayFunction
    smooth: bool
    second_moment: MomentFunction | None = None
    derivative_second_moment: MomentFunction | None = None


def _gaussian_exp_below_zero(a: float) -> float:
    """E[exp(a z); z < 0] = exp(a^2/2) Phi(-a), written with erfcx so a >> 1 cannot overflow."""
    return 0.5 * float(special.erfcx(a / np.sqrt(2.0)))


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _elu_derivative(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _elu_second_moment(q: float) -> float:
    # x < 0 half: alpha^2 (e^{2x} - 2 e^x + 1); x > 0 half: x^2, whose half-mean is q / 2.
    s = np.sqrt(q)
    negative = _gaussian_exp_below_zero(2 * s) - 2 * _gaussian_exp_below_zero(s) + 0.5
    return 0.5 * q + ELU_ALPHA**2 * negative


def _elu_derivative_second_moment(q: float) -> float:
    return 0.5 + ELU_ALPHA**2 * _gaussian_exp_below_zero(2 * np.sqrt(q))


def _gelu_derivative(x: np.ndarray) -> np.ndarray:
    # Exact (erf) GELU, PyTorch's default: phi = x Phi(x), phi' = Phi(x) + x N(x; 0, 1).
    return special.ndtr(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _silu_derivative(x: np.ndarray) -> np.ndarray:
    sigmoid = special.expit(x)
    return sigmoid * (1.0 + x * (1.0 - sigmoid))


def _sigmoid_derivative(x: np.ndarray) -> np.ndarray:
    # expit(x) * expit(-x) keeps full precision in both tails, unlike s * (1 - s).
    return special.expit(x) * special.expit(-x)


def _tanh_derivative(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.cosh(np.clip(x, -350.0, 350.0)) ** 2


_LEAKY_MEAN_SQUARE = 0.5 * (1.0 + LEAKY_RELU_SLOPE**2)

ACTIVATIONS: dict[str, Activation] = {
    activation.name: activation
    for activation in (
        Activation("sigmoid", special.expit, _sigmoid_derivative, smooth=True),
        Activation("tanh", np.tanh, _tanh_derivative, smooth=True),
        Activation(
            "relu",
            lambda x: np.maximum(x, 0.0),
            lambda x: (x > 0).astype(float),
            smooth=False,
            second_moment=lambda q: 0.5 * q,
            derivative_second_moment=lambda q: 0.5,
        ),
        Activation(
            "leaky_relu",
            lambda x: np.where(x > 0, x, LEAKY_RELU_SLOPE * x),
            lambda x: np.where(x > 0, 1.0, LEAKY_RELU_SLOPE),
            smooth=False,
            second_moment=lambda q: _LEAKY_MEAN_SQUARE * q,
            derivative_second_moment=lambda q: _LEAKY_MEAN_SQUARE,
        ),
        Activation(
            "elu",
            _elu,
            _elu_derivative,
            smooth=False,
            second_moment=_elu_second_moment,
            derivative_second_moment=_elu_derivative_second_moment,
        ),
        Activation("gelu", lambda x: x * special.ndtr(x), _gelu_derivative, smooth=True),
        Activation("silu", lambda x: x * special.expit(x), _silu_derivative, smooth=True),
        Activation("softplus", lambda x: np.logaddexp(0.0, x), special.expit, smooth=True),
        Activation(
            "linear",
            lambda x: np.asarray(x, dtype=float),
            lambda x: np.ones_like(x, dtype=float),
            smooth=True,
            second_moment=lambda q: q,
            derivative_second_moment=lambda q: 1.0,
        ),
    )
}


def get_activation(name: str) -> Activation:
    """Return the registered activation called `name`; ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"activation={name!r} has no mean-field theory here; known: {known}") from None
