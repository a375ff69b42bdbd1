"""BN's backward pass from the paper's equations, against torch autograd, and its decomposition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradientflow.theory import batchnorm_backward, batchnorm_forward, decompose_bn_gradient


def _random_case(seed: int, batch: int, features: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=rng.normal(size=features) * 3, scale=rng.uniform(0.1, 5, size=features), size=(batch, features))
    gamma = rng.normal(size=features)
    beta = rng.normal(size=features)
    grad_y = rng.normal(size=(batch, features))
    return x, gamma, beta, grad_y


@pytest.mark.parametrize(("batch", "features", "eps"), [(2, 3, 1e-5), (16, 5, 1e-5), (64, 32, 1e-9), (7, 1, 1e-3)])
def test_backward_matches_torch_autograd(batch: int, features: int, eps: float) -> None:
    torch = pytest.importorskip("torch")
    x, gamma, beta, grad_y = _random_case(batch * features, batch, features)
    y, cache = batchnorm_forward(x, gamma, beta, eps)
    grad_x, grad_gamma, grad_beta = batchnorm_backward(grad_y, cache)

    x_t, gamma_t, beta_t = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y_t = torch.nn.functional.batch_norm(x_t, None, None, gamma_t, beta_t, training=True, eps=eps)
    y_t.backward(torch.tensor(grad_y))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-5, atol=1e-12)
    for ours, theirs in ((grad_x, x_t.grad), (grad_gamma, gamma_t.grad), (grad_beta, beta_t.grad)):
        scale = np.abs(theirs.numpy()).max()
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-10 * scale)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(2, 20),
    features=st.integers(1, 6),
    eps=st.sampled_from([0.0, 1e-5, 0.1]),
)
def test_decomposition_reassembles_the_backward_pass(seed: int, batch: int, features: int, eps: float) -> None:
    x, gamma, beta, grad_y = _random_case(seed, batch, features)
    parts = decompose_bn_gradient(grad_y, x, gamma, eps)
    _, cache = batchnorm_forward(x, gamma, beta, eps)
    grad_x = batchnorm_backward(grad_y, cache)[0]
    # grad_x can cancel to ~0 (batch 2 with eps = 0 removes everything): compare at grad_y's scale.
    scale = np.abs(parts.scale).max() * np.abs(grad_y).max()
    np.testing.assert_allclose(parts.grad_x, grad_x, rtol=1e-9, atol=1e-11 * scale)
    np.testing.assert_allclose(
        parts.batch_mean + parts.along_x_hat + parts.residual, grad_y, atol=1e-12 * np.abs(grad_y).max()
    )
    # What BN's backward pass keeps has no batch mean, and (eps = 0) nothing along x_hat.
    np.testing.assert_allclose(parts.residual.mean(axis=0), 0.0, atol=1e-12 * np.abs(grad_y).max())
    if eps == 0.0 and np.all(cache.variance > 1e-6):
        np.testing.assert_allclose((parts.residual * cache.x_hat).mean(axis=0), 0.0, atol=1e-10 * np.abs(grad_y).max())


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\); x has shape \(4, 3\)"):
        batchnorm_forward(np.zeros((4, 3)), np.ones(2), np.zeros(3))
    with pytest.raises(ValueError, match="batch >= 2"):
        decompose_bn_gradient(np.zeros((1, 3)), np.zeros((1, 3)), np.ones(3))
    _, cache = batchnorm_forward(np.random.default_rng(0).normal(size=(4, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"grad_y has shape \(4, 2\)"):
        batchnorm_backward(np.zeros((4, 2)), cache)
