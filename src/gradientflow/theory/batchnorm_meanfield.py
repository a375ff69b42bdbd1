"""Gradient explosion in wide batch-normalized networks at initialization.

Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz (2019), "A Mean Field Theory of Batch
Normalization" (ICLR). Layer l computes h_l = W_l phi(BN(h_{l-1})), BN with gamma = 1, beta = 0,
eps = 0, batch size B, W ~ N(0, sigma_w2 / fan_in); a bias before BN cancels. For one neuron the
batch vector h in R^B is N(0, Sigma) with a B x B covariance Sigma.

Forward. With G = I - 11^T / B, BN maps h to n = sqrt(B) G h / ||G h||. If Sigma is BSB1
(equal diagonal, equal off-diagonal: a I + b 11^T) then G h ~ N(0, a G) is isotropic in the
(B-1)-dimensional space orthogonal to 1, so n is uniform on the sphere of radius sqrt(B) there,
whatever a and b. Hence the fixed point is reached in one layer:
Sigma* / sigma_w2 = E[phi(n) phi(n)^T] (the paper's BSB1 fixed point, its section 3.1).

Backward. The Jacobian of phi(BN(h)) is D (sqrt(B) / ||G h||) (G - v v^T), with D = diag(phi'(n)),
v = G h / ||G h||. The per-neuron gradient covariance Pi (B x B) then obeys
Pi_l = T(Pi_{l+1}) with T(Pi) = sigma_w2 E[J^T Pi J]. Since ||G h||^2 = sigma_w2 a' chi^2_{B-1}
independently of v, with a' = Sigma*_11 / sigma_w2 - Sigma*_12 / sigma_w2, and E[1/chi^2_{B-1}] = 1/(B-3):

    T(Pi) = B / (a' (B - 3)) * E_v[(G - v v^T) D Pi D (G - v v^T)].

sigma_w2 cancels (BN is scale invariant). T maps G to lambda G, and the paper's gradient
explosion rate lambda_G is that eigenvalue (tests confirm it is T's top eigenvalue for relu,
linear and tanh by building T from sampled Jacobians):

    lambda(B) = B / (a' (B-3) (B-1)) * E[(1 - 2/B) sum d_i^2 + (sum d_i)^2 / B^2
                                          - sum (d_i v_i)^2 + (sum d_i v_i)^2 / B],   d = phi'(n).

For linear phi this is (B-2)/(B-3) exactly. For relu every expectation is a Gaussian orthant
probability or an arc-cosine kernel of u = G z ~ N(0, G) (correlation -1/(B-1)), because the
sign pattern and the direction of u do not depend on ||u||; the result reproduces the paper's
table (B = 4: 3.084, 8: 1.788, ..., 256: 1.473, -> pi/(pi-1)). Other activations use a seeded
Monte Carlo estimate of the same expectations over the sphere.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .activations import get_activation

__all__ = [
    "bn_gradient_growth",
    "bn_fixed_point_covariance",
    "bn_gradient_rms_profile",
    "bn_relu_gradient_growth",
    "bn_linear_gradient_growth",
]

#: Default Monte Carlo budget: batch vectors x batch size ~ 4M numbers (~0.2 s per call).
_MONTE_CARLO_ELEMENTS = 1 << 22
_CHUNK_ELEMENTS = 1 << 19


def bn_linear_gradient_growth(batch_size: int) -> float:
    """Return lambda(B) = (B-2)/(B-3) for BN-linear: per-layer growth factor of the squared
    gradient norm (unitless). Yang et al. 2019, linear case of their Theorem on lambda_G."""
    _check_batch_size(batch_size)
    return (batch_size - 2) / (batch_size - 3)


def _relu_kernels(batch_size: int) -> tuple[float, float, float]:
    """For u ~ N(0, G): E[relu(u_i)^2], E[relu(u_i) relu(u_j)] (i != j), P(u_i > 0, u_j > 0)."""
    variance = 1.0 - 1.0 / batch_size
    correlation = -1.0 / (batch_size - 1)
    angle = np.arccos(correlation)
    # Arc-cosine kernel of degree 1 (Cho & Saul 2009): E[relu(x) relu(y)] for unit-correlated pairs.
    cross = variance / (2 * np.pi) * (np.sin(angle) + (np.pi - angle) * np.cos(angle))
    both_positive = 0.25 + np.arcsin(correlation) / (2 * np.pi)  # Sheppard's orthant formula
    return variance / 2, float(cross), float(both_positive)


def bn_relu_gradient_growth(batch_size: int) -> float:
    """Return lambda(B) for BN-ReLU in closed form: per-layer growth factor of the squared
    gradient norm (unitless); tends to pi/(pi-1) = 1.467 as B -> inf. See the module docstring."""
    _check_batch_size(batch_size)
    b = batch_size
    square, cross, both_positive = _relu_kernels(b)
    # Direction v = u / ||u|| is independent of ||u||^2 (mean B-1): E[f(v)] = E[f(u)] / (B-1) for
    # degree-2 homogeneous f; n = sqrt(B) v.
    deviation = b / (b - 1) * (square - cross)  # a' = Sigma*_11 - Sigma*_12, over sigma_w2
    trace_dgdg = (b / 2) * (1 - 1 / b) ** 2 + b * (b - 1) * both_positive / b**2
    relu_sum_square = (b * square + b * (b - 1) * cross) / (b - 1)  # E[(sum_i relu(v_i))^2]
    v_dgd_v = 0.5 - relu_sum_square / b  # E[sum_{v_i>0} v_i^2] = 1/2
    return b * (trace_dgdg - v_dgd_v) / (deviation * (b - 3) * (b - 1))


def _sphere_samples(batch_size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Return `count` BN outputs n = sqrt(B) u / ||u||, u ~ N(0, G): shape (count, batch_size)."""
    z = rng.standard_normal((count, batch_size))
    u = z - z.mean(axis=1, keepdims=True)
    return np.sqrt(batch_size) * u / np.linalg.norm(u, axis=1, keepdims=True)


@lru_cache(maxsize=512)
def _monte_carlo(activation: str, batch_size: int, samples: int, seed: int) -> tuple[float, float, float]:
    """Return (E[phi(n_1)^2], E[phi(n_1) phi(n_2)], lambda) estimated from `samples` batch vectors."""
    entry = get_activation(activation)
    b = batch_size
    rng = np.random.default_rng(seed)
    totals = np.zeros(4)  # sum over samples of: ||phi(n)||^2, (sum phi(n))^2, numerator, ||G phi(n)||^2
    chunk = max(1, _CHUNK_ELEMENTS // b)
    for start in range(0, samples, chunk):
        n = _sphere_samples(b, min(chunk, samples - start), rng)  # (count, B)
        y, d = entry.function(n), entry.derivative(n)  # (count, B) each
        v = n / np.sqrt(b)
        dv = d * v
        trace_dgdg = (1 - 2 / b) * (d * d).sum(1) + d.sum(1) ** 2 / b**2
        v_dgd_v = (dv * dv).sum(1) - dv.sum(1) ** 2 / b
        y_sum = y.sum(1)
        y_square = (y * y).sum(1)
        totals += [
            y_square.sum(),
            (y_sum**2).sum(),
            (trace_dgdg - v_dgd_v).sum(),
            (y_square - y_sum**2 / b).sum(),
        ]
    square = totals[0] / (samples * b)
    cross = (totals[1] - totals[0]) / (samples * b * (b - 1))
    deviation = totals[3] / (samples * (b - 1))
    growth = b * (totals[2] / samples) / (deviation * (b - 3) * (b - 1))
    return float(square), float(cross), float(growth)


def _default_samples(batch_size: int) -> int:
    return max(20_000, _MONTE_CARLO_ELEMENTS // batch_size)


@lru_cache(maxsize=1024)
def bn_gradient_growth(activation: str, batch_size: int, samples: int | None = None, seed: int = 0) -> float:
    """Return lambda(B): the factor by which the mean squared gradient grows per layer, going
    down a wide Linear -> BN -> phi network at initialization (Yang et al. 2019). Unitless;
    the per-layer grad_rms ratio is sqrt(lambda). Independent of sigma_w2 and sigma_b2.

    Exact for "linear" ((B-2)/(B-3)) and "relu"; other activations use a Monte Carlo estimate
    with `samples` batch vectors (default ~4M numbers in all; relative error ~0.1 %) drawn from
    numpy's default_rng(`seed`), so repeated calls return the same number. B must be >= 4
    (for B = 3 the inverse batch variance has infinite mean).

    >>> round(bn_gradient_growth("relu", 4), 3)
    3.084
    """
    get_activation(activation)
    _check_batch_size(batch_size)
    if activation == "linear":
        return bn_linear_gradient_growth(batch_size)
    if activation == "relu":
        return bn_relu_gradient_growth(batch_size)
    return _monte_carlo(activation, batch_size, samples or _default_samples(batch_size), seed)[2]


def bn_fixed_point_covariance(
    activation: str, batch_size: int, samples: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """Return (diagonal, off_diagonal) of the BSB1 fixed point Sigma* / sigma_w2: the batch
    covariance of a neuron's pre-BN input, in units of sigma_w2 (the covariance of phi(n) for n
    uniform on the BN sphere). Exact for linear and relu, Monte Carlo otherwise."""
    get_activation(activation)
    _check_batch_size(batch_size)
    b = batch_size
    if activation == "linear":
        return 1.0, -1.0 / (b - 1)
    if activation == "relu":
        square, cross, _ = _relu_kernels(b)
        return b / (b - 1) * square, b / (b - 1) * cross
    square, cross, _ = _monte_carlo(activation, b, samples or _default_samples(b), seed)
    return square, cross


def bn_gradient_rms_profile(activation: str, batch_size: int, depth: int) -> np.ndarray:
    """Return the predicted grad_rms of hidden layers 1..depth relative to the last one,
    sqrt(lambda(B)) ** (depth - l), shape (depth,), unitless (the last entry is 1.0)."""
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    growth = bn_gradient_growth(activation, batch_size)
    return np.sqrt(growth) ** np.arange(depth - 1, -1, -1, dtype=float)


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) != batch_size or batch_size < 4:
        raise ValueError(f"batch_size={batch_size!r}: the mean-field BN gradient rate needs an integer >= 4")
