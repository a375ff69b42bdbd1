"""Gaussian expectations: both quadrature rules against adaptive quadrature, Monte Carlo and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from gradientflow.theory import ACTIVATIONS, gaussian_expectation, get_activation
from gradientflow.theory.meanfield import activation_second_moment, derivative_second_moment

VARIANCES = [1e-3, 0.3, 1.0, 1.01, 4.0, 30.0, 1e3, 1e5]


def reference(function, q: float) -> float:
    """E[function(sqrt(q) z)] by adaptive quadrature in x = sqrt(q) z, split where features live."""
    s = np.sqrt(q)

    def density(x: float) -> float:
        return float(function(np.array([x]))[0]) * np.exp(-0.5 * x * x / q) / np.sqrt(2 * np.pi * q)

    edges = sorted({-40 * s, -min(40.0, 40 * s), 0.0, min(40.0, 40 * s), 40 * s})
    return sum(integrate.quad(density, a, b, epsabs=0, epsrel=1e-12, limit=400)[0] for a, b in zip(edges, edges[1:]))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("q", VARIANCES)
def test_moments_match_adaptive_quadrature(name: str, q: float) -> None:
    entry = get_activation(name)
    expected_phi = reference(lambda x: entry.function(x) ** 2, q)
    expected_slope = reference(lambda x: entry.derivative(x) ** 2, q)
    assert activation_second_moment(name, q) == pytest.approx(expected_phi, rel=1e-8, abs=1e-300)
    assert derivative_second_moment(name, q) == pytest.approx(expected_slope, rel=1e-8, abs=1e-300)


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.second_moment is not None])
@pytest.mark.parametrize("q", VARIANCES)
def test_closed_forms_match_panel_quadrature(name: str, q: float) -> None:
    entry = get_activation(name)
    quadrature_phi = gaussian_expectation(lambda x: entry.function(x) ** 2, q, smooth=False)
    quadrature_slope = gaussian_expectation(lambda x: entry.derivative(x) ** 2, q, smooth=False)
    assert entry.second_moment(q) == pytest.approx(quadrature_phi, rel=1e-10)
    assert entry.derivative_second_moment(q) == pytest.approx(quadrature_slope, rel=1e-10)


@pytest.mark.parametrize("q", [0.5, 2.0, 50.0])
def test_sigmoid_moments_match_monte_carlo(q: float) -> None:
    sigmoid = get_activation("sigmoid")
    z = np.random.default_rng(1234).standard_normal(1_000_000)
    for function, quadrature in (
        (lambda x: sigmoid.function(x) ** 2, activation_second_moment("sigmoid", q)),
        (lambda x: sigmoid.derivative(x) ** 2, derivative_second_moment("sigmoid", q)),
    ):
        samples = function(np.sqrt(q) * z)
        standard_error = samples.std() / np.sqrt(samples.size)
        assert abs(samples.mean() - quadrature) < 5 * standard_error


def test_polynomials_are_exact_and_zero_variance_is_a_point_mass() -> None:
    assert gaussian_expectation(lambda x: x**4, 2.0) == pytest.approx(3 * 2.0**2, rel=1e-13)
    assert gaussian_expectation(lambda x: x**4, 200.0) == pytest.approx(3 * 200.0**2, rel=1e-12)
    assert gaussian_expectation(np.cos, 0.0) == 1.0
    with pytest.raises(ValueError, match="q=-1"):
        gaussian_expectation(np.cos, -1.0)


def test_unknown_activation_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="activation='swish'.*tanh"):
        get_activation("swish")
