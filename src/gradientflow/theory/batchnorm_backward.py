"""The batch-norm forward and backward pass in numpy, written out from the paper's equations.

Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift", Algorithm 1 (forward) and the chain rule of section 3 (backward), for
x of shape (batch, features), statistics over the batch axis, biased (1/m) variance as in training.
`decompose_bn_gradient` splits dL/dx into the three things BN's backward pass does to dL/dy, which
is what the report's "why BN changes the gradient" panel draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BatchNormCache",
    "BatchNormGradientParts",
    "batchnorm_forward",
    "batchnorm_backward",
    "decompose_bn_gradient",
]


@dataclass(frozen=True)
class BatchNormCache:
    """What the backward pass needs from the forward pass (arrays of shape (batch, features) or (features,))."""

    x_centered: np.ndarray  # (batch, features): x - mu_B
    x_hat: np.ndarray  # (batch, features): (x - mu_B) / sqrt(var_B + eps)
    variance: np.ndarray  # (features,): var_B, biased
    gamma: np.ndarray  # (features,)
    eps: float


@dataclass(frozen=True)
class BatchNormGradientParts:
    """dL/dx = scale * (grad_y - batch_mean - along_x_hat); arrays (batch, features), scale (features,).

    batch_mean: the batch mean of dL/dy, broadcast over the batch (BN removes it);
    along_x_hat: x_hat * mean_batch(dL/dy * x_hat), the part along the normalized input (removed);
    residual: grad_y - batch_mean - along_x_hat; scale: gamma / sqrt(var_B + eps), (features,).
    """

    grad_y: np.ndarray
    batch_mean: np.ndarray
    along_x_hat: np.ndarray
    residual: np.ndarray
    scale: np.ndarray

    @property
    def grad_x(self) -> np.ndarray:
        """dL/dx reassembled from the parts, (batch, features), in loss units per input unit."""
        return self.scale * self.residual


def _check_inputs(x: np.ndarray, gamma: np.ndarray, eps: float) -> None:
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x has shape {x.shape}; batch norm needs (batch >= 2, features)")
    if gamma.shape != (x.shape[1],):
        raise ValueError(f"gamma has shape {gamma.shape}; x has shape {x.shape}, so gamma needs ({x.shape[1]},)")
    if not eps >= 0:
        raise ValueError(f"eps={eps!r} must be >= 0")


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, BatchNormCache]:
    """Return (y, cache): y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta, shape (batch, features),
    in x's units times gamma's (Ioffe & Szegedy 2015, Algorithm 1)."""
    x, gamma, beta = (np.asarray(a, dtype=float) for a in (x, gamma, beta))
    _check_inputs(x, gamma, eps)
    mean = x.mean(axis=0)  # (features,)
    x_centered = x - mean  # (batch, features)
    variance = (x_centered**2).mean(axis=0)  # (features,), biased as in training
    x_hat = x_centered / np.sqrt(variance + eps)
    return gamma * x_hat + beta, BatchNormCache(x_centered, x_hat, variance, gamma, float(eps))


def batchnorm_backward(grad_y: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (dL/dx (batch, features), dL/dgamma (features,), dL/dbeta (features,)) from dL/dy.

    Ioffe & Szegedy (2015), section 3, term by term (m = batch size):
    dL/dx_hat = dL/dy * gamma;
    dL/dvar = sum_i dL/dx_hat_i (x_i - mu) (-1/2) (var + eps)^(-3/2);
    dL/dmu = sum_i dL/dx_hat_i (-1 / sqrt(var + eps)) + dL/dvar * sum_i -2 (x_i - mu) / m;
    dL/dx_i = dL/dx_hat_i / sqrt(var + eps) + dL/dvar * 2 (x_i - mu) / m + dL/dmu / m;
    dL/dgamma = sum_i dL/dy_i x_hat_i;  dL/dbeta = sum_i dL/dy_i.
    """
    grad_y = np.asarray(grad_y, dtype=float)
    if grad_y.shape != cache.x_hat.shape:
        raise ValueError(f"grad_y has shape {grad_y.shape}; the forward input had {cache.x_hat.shape}")
    batch = grad_y.shape[0]
    inv_std = 1.0 / np.sqrt(cache.variance + cache.eps)  # (features,)
    grad_x_hat = grad_y * cache.gamma
    grad_var = (grad_x_hat * cache.x_centered).sum(axis=0) * -0.5 * inv_std**3
    grad_mean = (grad_x_hat * -inv_std).sum(axis=0) + grad_var * (-2.0 * cache.x_centered).sum(axis=0) / batch
    grad_x = grad_x_hat * inv_std + grad_var * 2.0 * cache.x_centered / batch + grad_mean / batch
    return grad_x, (grad_y * cache.x_hat).sum(axis=0), grad_y.sum(axis=0)


def decompose_bn_gradient(
    grad_y: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-5
) -> BatchNormGradientParts:
    """Return the parts of BN's backward pass: dL/dx = gamma / sigma_B * (dL/dy - mean_B(dL/dy)
    - x_hat * mean_B(dL/dy * x_hat)), sigma_B = sqrt(var_B + eps). This is the backward pass of
    `batchnorm_backward` regrouped: the gradient loses its batch mean and its component along the
    normalized input (an orthogonal projection when eps = 0), and the rest is scaled by gamma/sigma_B.
    """
    x, gamma, grad_y = (np.asarray(a, dtype=float) for a in (x, gamma, grad_y))
    _check_inputs(x, gamma, eps)
    if grad_y.shape != x.shape:
        raise ValueError(f"grad_y has shape {grad_y.shape}; x has {x.shape}")
    x_centered = x - x.mean(axis=0)
    sigma = np.sqrt((x_centered**2).mean(axis=0) + eps)  # (features,)
    x_hat = x_centered / sigma
    batch_mean = np.broadcast_to(grad_y.mean(axis=0), grad_y.shape).copy()
    along_x_hat = x_hat * (grad_y * x_hat).mean(axis=0)
    residual = grad_y - batch_mean - along_x_hat
    return BatchNormGradientParts(grad_y, batch_mean, along_x_hat, residual, gamma / sigma)
