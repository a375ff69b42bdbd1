"""lambda(B) of BN networks: the published table, closed forms, and the full backward operator."""

from __future__ import annotations

import numpy as np
import pytest

from gradientflow.theory import (
    batchnorm_backward,
    batchnorm_forward,
    bn_fixed_point_covariance,
    bn_gradient_growth,
    bn_gradient_rms_profile,
    get_activation,
)
from gradientflow.theory.batchnorm_meanfield import _monte_carlo

#: Yang et al. (2019), BN-ReLU gradient explosion rates, printed to 3 decimals.
PUBLISHED_RELU = {4: 3.084, 8: 1.788, 16: 1.590, 32: 1.522, 64: 1.493, 128: 1.480, 256: 1.473}


@pytest.mark.parametrize(("batch_size", "published"), sorted(PUBLISHED_RELU.items()))
def test_relu_rate_reproduces_the_published_table(batch_size: int, published: float) -> None:
    assert bn_gradient_growth("relu", batch_size) == pytest.approx(published, abs=6e-4)


def test_relu_rate_tends_to_pi_over_pi_minus_one() -> None:
    assert bn_gradient_growth("relu", 100_000) == pytest.approx(np.pi / (np.pi - 1), rel=1e-4)


@pytest.mark.parametrize("batch_size", [4, 5, 10, 256])
def test_linear_rate_is_closed_form(batch_size: int) -> None:
    assert bn_gradient_growth("linear", batch_size) == (batch_size - 2) / (batch_size - 3)


@pytest.mark.parametrize("batch_size", [4, 16, 128])
def test_monte_carlo_agrees_with_closed_forms(batch_size: int) -> None:
    samples = 1_600_000 // batch_size
    for activation in ("relu", "linear"):
        square, cross, growth = _monte_carlo(activation, batch_size, samples, 1)
        diagonal, off_diagonal = bn_fixed_point_covariance(activation, batch_size)
        assert growth == pytest.approx(bn_gradient_growth(activation, batch_size), rel=5e-3)
        assert square == pytest.approx(diagonal, rel=5e-3)
        assert cross == pytest.approx(off_diagonal, abs=5e-3)


def _sampled_backward_operator(activation: str, batch_size: int, samples: int) -> np.ndarray:
    """E[J^T (.) J] as a (B*B, B*B) matrix, J the Jacobian of phi(BN(h)), h ~ N(0, Sigma*).

    Independent of the closed form: Sigma* is sampled as given, ||G h|| is sampled (not averaged
    analytically), and J^T e_k comes from `batchnorm_backward` (eps = 0) on B unit gradients.
    """
    entry = get_activation(activation)
    diagonal, off_diagonal = bn_fixed_point_covariance(activation, batch_size)
    # (B, B), sigma_w2 = 1; adding 11^T (invisible to BN) keeps it positive definite for linear phi.
    sigma = (diagonal - off_diagonal) * np.eye(batch_size) + off_diagonal + 1.0
    rng = np.random.default_rng(7)
    h = np.linalg.cholesky(sigma) @ rng.standard_normal((batch_size, samples))  # (B, samples): one neuron per column
    ones = np.ones(samples)
    n, cache = batchnorm_forward(h, ones, np.zeros(samples), eps=0.0)
    slope = entry.derivative(n)  # (B, samples)
    jacobian_t = np.empty((samples, batch_size, batch_size))  # J^T per sample
    for k in range(batch_size):
        unit = np.zeros_like(h)
        unit[k] = slope[k]  # D e_k
        jacobian_t[:, :, k] = batchnorm_backward(unit, cache)[0].T
    operator = np.einsum("mik,mjl->ijkl", jacobian_t, jacobian_t) / samples
    return operator.reshape(batch_size**2, batch_size**2)


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
@pytest.mark.parametrize("batch_size", [6, 8])
def test_rate_is_the_top_eigenvalue_of_the_backward_operator(activation: str, batch_size: int) -> None:
    operator = _sampled_backward_operator(activation, batch_size, samples=60_000)
    covariance = np.eye(batch_size)  # any symmetric PSD start: power iteration on gradient covariances
    for _ in range(60):
        image = (operator @ covariance.ravel()).reshape(batch_size, batch_size)
        rate = np.trace(image) / np.trace(covariance)
        covariance = image / np.trace(image)
    assert rate == pytest.approx(bn_gradient_growth(activation, batch_size), rel=0.015)


def test_rms_profile_and_validation() -> None:
    profile = bn_gradient_rms_profile("relu", 32, depth=5)
    np.testing.assert_allclose(profile, np.sqrt(bn_gradient_growth("relu", 32)) ** np.arange(4, -1, -1))
    with pytest.raises(ValueError, match="batch_size=3"):
        bn_gradient_growth("relu", 3)
    with pytest.raises(ValueError, match="activation='swish'"):
        bn_gradient_growth("swish", 32)


def test_monte_carlo_rate_is_repeatable_and_cached() -> None:
    first = bn_gradient_growth("tanh", 16)
    assert bn_gradient_growth("tanh", 16) == first
    assert first > 1  # BN explodes gradients for tanh too (Yang et al. 2019)
