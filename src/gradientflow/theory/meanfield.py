"""Mean-field signal and gradient propagation in plain (un-normalized) wide networks.

Conventions (Poole et al. 2016, "Exponential expressivity ..."; Schoenholz et al. 2017, "Deep
information propagation"): layer l computes h_l = W_l phi(h_{l-1}) + b_l with weights
W ~ N(0, sigma_w2 / fan_in) and biases b ~ N(0, sigma_b2). For width -> inf every pre-activation
of layer l is N(0, q_l) with the length map (Poole et al., eq. 3)

    q_l = sigma_w2 * E[phi(sqrt(q_{l-1}) z)^2] + sigma_b2,          z ~ N(0, 1),

and the pre-activation gradient delta_l = dL/dh_l shrinks or grows per layer, in mean square, by
(Schoenholz et al., eq. 5 and the chi_1 of eq. 9 evaluated at q_l instead of q*)

    E[delta_l^2] / E[delta_{l+1}^2] = sigma_w2 * E[phi'(sqrt(q_l) z)^2].

Variances are in squared pre-activation units; gains are unitless ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import optimize

from .activations import get_activation
from .gaussian import gaussian_expectation

__all__ = [
    "activation_second_moment",
    "derivative_second_moment",
    "variance_map",
    "variance_fixed_point",
    "layer_gradient_gain",
    "chi1",
    "critical_sigma_w2",
    "variance_profile",
    "gradient_rms_profile",
]

#: A fixed point above this is reported as inf (the map diverges); below _Q_FLOOR as 0.
_Q_CEILING = 1e12
_Q_FLOOR = 1e-12


def activation_second_moment(activation: str, q: float) -> float:
    """Return E[phi(sqrt(q) z)^2], z ~ N(0, 1): mean square of the activation's output."""
    entry = get_activation(activation)
    if entry.second_moment is not None:
        return float(entry.second_moment(min(q, 1e300)))
    return gaussian_expectation(lambda x: entry.function(x) ** 2, q, smooth=entry.smooth)


def derivative_second_moment(activation: str, q: float) -> float:
    """Return E[phi'(sqrt(q) z)^2], z ~ N(0, 1): mean square of the activation's slope."""
    entry = get_activation(activation)
    if entry.derivative_second_moment is not None:
        return float(entry.derivative_second_moment(min(q, 1e300)))
    return gaussian_expectation(lambda x: entry.derivative(x) ** 2, q, smooth=entry.smooth)


def variance_map(q: float, activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """Return the next layer's pre-activation variance: sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2."""
    return sigma_w2 * activation_second_moment(activation, q) + sigma_b2


@lru_cache(maxsize=4096)
def variance_fixed_point(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """Return q*, the fixed point of `variance_map` reached by iterating it from q0.

    Every registered phi^2 grows with |x|, so the map is increasing and iterating it from q0 moves
    monotonically to the nearest root of map(q) - q in the direction of map(q0) - q0; that root is
    bracketed on a geometric grid and polished with Brent's method (relative error ~1e-12).
    Returns ``inf`` when the variance grows without bound (e.g. relu with sigma_w2 > 2) and 0.0
    when it collapses (e.g. tanh with sigma_w2 < 1, sigma_b2 = 0). Units: squared
    pre-activation units.

    >>> variance_fixed_point("linear", 0.5, 1.0)
    2.0
    """
    _check_nonnegative(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q0=q0)

    def excess(q: float) -> float:
        return variance_map(q, activation, sigma_w2, sigma_b2) - q

    start = excess(q0)
    if abs(start) <= 1e-13 * max(q0, 1e-300):
        return float(q0)
    factor = 2.0 if start > 0 else 0.5
    previous, q = q0, q0 * factor
    while _Q_FLOOR <= q <= _Q_CEILING:
        if (excess(q) > 0) != (start > 0):
            low, high = sorted((previous, q))
            return float(optimize.brentq(excess, low, high, xtol=1e-300, rtol=1e-13))
        previous, q = q, q * factor
    return float("inf") if start > 0 else 0.0


def layer_gradient_gain(q: float, activation: str, sigma_w2: float) -> float:
    """Return sigma_w2 E[phi'(sqrt(q) z)^2]: the factor by which the mean squared pre-activation
    gradient grows from layer l+1 down to layer l, where q is layer l's pre-activation variance
    and sigma_w2 belongs to layer l+1's weights. Unitless; < 1 means vanishing."""
    return sigma_w2 * derivative_second_moment(activation, q)


@lru_cache(maxsize=4096)
def chi1(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """Return chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] (Schoenholz et al. 2017, eq. 9): the
    per-layer gain of the mean squared gradient deep in the network, at the fixed point q* reached
    from q0. Unitless: 1 is critical, < 1 vanishing, > 1 exploding.

    >>> chi1("relu", 2.0, 0.0)
    1.0
    """
    return layer_gradient_gain(variance_fixed_point(activation, sigma_w2, sigma_b2, q0), activation, sigma_w2)


@lru_cache(maxsize=256)
def critical_sigma_w2(activation: str, sigma_b2: float = 0.0, low: float = 1e-2, high: float = 1e4) -> float:
    """Return the weight variance sigma_w2 at which chi_1 = 1 (the edge of chaos) for this bias
    variance: the first crossing of chi_1 - 1 from below on a geometric grid over [low, high],
    polished with Brent's method. E.g. tanh with sigma_b2 = 0.05 gives about 1.761 (Schoenholz et
    al. 2017, Fig. 1); relu gives 2 (He et al. 2015). ValueError if chi_1 never reaches 1.
    """
    _check_nonnegative(sigma_b2=sigma_b2)

    def excess(sigma_w2: float) -> float:
        return chi1(activation, float(sigma_w2), sigma_b2) - 1.0

    grid = np.geomspace(low, high, 49)
    values = [excess(w) for w in grid]
    for index in range(len(grid) - 1):
        if values[index] <= 0 < values[index + 1]:
            return float(optimize.brentq(excess, grid[index], grid[index + 1], xtol=1e-12, rtol=1e-12))
    raise ValueError(
        f"chi_1 of activation={activation!r} with sigma_b2={sigma_b2} never crosses 1 for sigma_w2 "
        f"in [{low}, {high}] (it goes from {values[0] + 1:.3g} to {values[-1] + 1:.3g})"
    )


def variance_profile(
    activation: str,
    sigma_w2: float | Sequence[float],
    sigma_b2: float,
    depth: int,
    input_variance: float = 1.0,
) -> np.ndarray:
    """Return q_1 .. q_depth, the pre-activation variance of each hidden layer, shape (depth,).

    The first layer sees the raw input: q_1 = sigma_w2[0] * input_variance + sigma_b2, where
    input_variance is the mean squared input coordinate ((1/n_0) E||x||^2; 1 for standardized
    data). Later layers follow `variance_map`. `sigma_w2` is one value for every layer or one per
    layer (the first layer's differs when its fan_in is the input size; see `init_sigma_w2`).
    """
    weights = _per_layer(sigma_w2, depth)
    _check_nonnegative(sigma_b2=sigma_b2, input_variance=input_variance)
    variances = np.empty(depth)
    variances[0] = weights[0] * input_variance + sigma_b2
    for layer in range(1, depth):
        variances[layer] = variance_map(float(variances[layer - 1]), activation, weights[layer], sigma_b2)
    return variances


def gradient_rms_profile(
    activation: str,
    sigma_w2: float | Sequence[float],
    sigma_b2: float,
    depth: int,
    input_variance: float = 1.0,
    quantity: Literal["pre_activation", "weight"] = "pre_activation",
) -> np.ndarray:
    """Return the predicted gradient rms of each hidden layer 1..depth relative to the last one
    (so the last entry is 1.0), shape (depth,), unitless.

    ``quantity="pre_activation"`` predicts the probe's ``grad_rms`` (rms of dL/dh_l):
    r_l = r_{l+1} * sqrt(sigma_w2[l+1] E[phi'(sqrt(q_l) z)^2]). ``quantity="weight"`` predicts
    the rms of dL/dW_l = delta_l phi(h_{l-1})^T, which also carries the input's rms
    sqrt(E[phi(sqrt(q_{l-1}) z)^2]) (sqrt(input_variance) for layer 1). The output layer's
    gradient is taken as given: only ratios between hidden layers are predicted.
    """
    weights = _per_layer(sigma_w2, depth)
    variances = variance_profile(activation, weights, sigma_b2, depth, input_variance)
    log_rms = np.zeros(depth)
    for layer in range(depth - 2, -1, -1):
        gain = layer_gradient_gain(float(variances[layer]), activation, weights[layer + 1])
        log_rms[layer] = log_rms[layer + 1] + 0.5 * np.log(gain) if gain > 0 else -np.inf
    if quantity == "weight":
        inputs = [input_variance] + [activation_second_moment(activation, float(q)) for q in variances[:-1]]
        log_inputs = 0.5 * np.log(np.asarray(inputs))
        log_rms = log_rms + log_inputs - log_inputs[-1]
    elif quantity != "pre_activation":
        raise ValueError(f"quantity={quantity!r}; allowed: 'pre_activation', 'weight'")
    return np.exp(log_rms)


def _per_layer(sigma_w2: float | Sequence[float], depth: int) -> list[float]:
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    values = np.asarray(sigma_w2, dtype=float)
    if values.ndim == 0:
        values = np.full(depth, float(values))
    if values.shape != (depth,):
        raise ValueError(f"sigma_w2 has {values.size} values; give one, or one per layer (depth={depth})")
    _check_nonnegative(sigma_w2=float(values.min()))
    return [float(value) for value in values]


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name}={value!r} must be >= 0")
