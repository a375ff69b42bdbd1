"""Plain-network mean field: exact special cases, the tanh edge of chaos, and a wide torch network."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradientflow.theory import (
    ACTIVATIONS,
    chi1,
    critical_sigma_w2,
    gradient_rms_profile,
    layer_gradient_gain,
    variance_fixed_point,
    variance_map,
    variance_profile,
)

weight_variances = st.floats(0.05, 1.95)
# a bias variance of 1e-12 puts the fixed point below the root finder's bracket: test 0 and >= 1e-6
bias_variances = st.one_of(st.just(0.0), st.floats(1e-6, 2.0))


@settings(max_examples=30, deadline=None)
@given(sigma_w2=weight_variances, sigma_b2=bias_variances)
def test_relu_chi1_is_half_the_weight_variance(sigma_w2: float, sigma_b2: float) -> None:
    assert chi1("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, rel=1e-12)
    assert variance_fixed_point("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_b2 / (1 - sigma_w2 / 2), rel=1e-10)


@settings(max_examples=30, deadline=None)
@given(sigma_w2=st.floats(0.05, 0.95), sigma_b2=bias_variances)
def test_linear_chi1_is_the_weight_variance(sigma_w2: float, sigma_b2: float) -> None:
    assert chi1("linear", sigma_w2, sigma_b2) == pytest.approx(sigma_w2, rel=1e-12)
    assert variance_fixed_point("linear", sigma_w2, sigma_b2) == pytest.approx(sigma_b2 / (1 - sigma_w2), rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    sigma_w2=st.floats(0.1, 5.0),
    sigma_b2=st.floats(0.01, 1.0),
    q0=st.floats(0.01, 10.0),
)
def test_fixed_point_is_a_fixed_point_of_the_map(activation: str, sigma_w2: float, sigma_b2: float, q0: float) -> None:
    q_star = variance_fixed_point(activation, sigma_w2, sigma_b2, q0)
    if np.isfinite(q_star):
        assert variance_map(q_star, activation, sigma_w2, sigma_b2) == pytest.approx(q_star, rel=1e-9)
    # Iterating the increasing map from q0 moves monotonically towards q* (the attractor of q0), never past it.
    q = q0
    for _ in range(20):
        q = variance_map(q, activation, sigma_w2, sigma_b2)
    assert min(q0, q_star) * (1 - 1e-9) <= q <= max(q0, q_star) * (1 + 1e-9)


def test_divergent_and_collapsing_variances() -> None:
    assert variance_fixed_point("relu", 2.5, 0.1) == float("inf")
    assert variance_fixed_point("linear", 1.0, 0.1) == float("inf")
    assert variance_fixed_point("tanh", 0.5, 0.0) == 0.0
    assert variance_fixed_point("relu", 2.0, 0.0, q0=3.0) == 3.0  # marginal: every q is fixed


def test_tanh_is_critical_at_the_published_weight_variance() -> None:
    # Schoenholz et al. (2017), Fig. 1: the order-to-chaos line passes sigma_w2 ~ 1.76 at sigma_b2 = 0.05.
    critical = critical_sigma_w2("tanh", 0.05)
    assert critical == pytest.approx(1.761, abs=2e-3)
    assert chi1("tanh", critical, 0.05) == pytest.approx(1.0, abs=1e-9)
    assert chi1("tanh", 1.0, 0.05) < 1 < chi1("tanh", 3.0, 0.05)
    assert critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)


def test_relu_and_linear_critical_points() -> None:
    assert critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, rel=1e-9)
    assert critical_sigma_w2("linear", 0.0) == pytest.approx(1.0, rel=1e-9)


def test_profiles_shapes_and_anchors() -> None:
    variances = variance_profile("tanh", 1.5, 0.05, depth=6, input_variance=2.0)
    assert variances.shape == (6,)
    assert variances[0] == pytest.approx(1.5 * 2.0 + 0.05)
    assert variances[1] == pytest.approx(variance_map(variances[0], "tanh", 1.5, 0.05))
    profile = gradient_rms_profile("tanh", 1.5, 0.05, depth=6)
    assert profile[-1] == 1.0
    unit_input = variance_profile("tanh", 1.5, 0.05, depth=6)
    assert profile[-2] == pytest.approx(np.sqrt(layer_gradient_gain(unit_input[-2], "tanh", 1.5)))
    # He-initialized relu is exactly critical: a flat profile.
    np.testing.assert_allclose(gradient_rms_profile("relu", 2.0, 0.0, depth=8), np.ones(8), rtol=1e-12)
    np.testing.assert_allclose(gradient_rms_profile("relu", 1.0, 0.0, depth=4), 0.5 ** (np.arange(3, -1, -1) / 2))


def test_profile_input_validation() -> None:
    with pytest.raises(ValueError, match="depth=4"):
        gradient_rms_profile("tanh", [1.0, 1.0], 0.0, depth=4)
    with pytest.raises(ValueError, match="quantity='bias'"):
        gradient_rms_profile("tanh", 1.0, 0.0, depth=4, quantity="bias")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_b2=-1"):
        variance_profile("tanh", 1.0, -1.0, depth=4)


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2"), [("tanh", 1.0, 0.05), ("tanh", 4.0, 0.0), ("relu", 1.5, 0.1)]
)
def test_profiles_match_wide_torch_networks(activation: str, sigma_w2: float, sigma_b2: float) -> None:
    """Second method: autograd through random networks; mean squares averaged over 32 of them.

    One network of width N is not enough: inputs that become correlated with depth share each
    layer's finite-width fluctuation (~sqrt(2/N) per layer), which compounds multiplicatively.
    With 24 networks of width 384 the deviation at depth 6 is ~2.5 % (seed 0); tolerance 8 %.
    """
    torch = pytest.importorskip("torch")
    networks, width, depth, batch = 24, 384, 6, 8
    rng = np.random.default_rng(0)

    def gaussian(*shape: int, variance: float):
        return torch.from_numpy(rng.standard_normal(shape) * np.sqrt(variance))

    phi = {"tanh": torch.tanh, "relu": torch.relu}[activation]
    mean_square_pre = np.zeros(depth)
    mean_square_grad = np.zeros(depth)
    for _ in range(networks):
        hidden = gaussian(batch, width, variance=1.0)
        hidden.requires_grad_()
        pre_activations = []
        for _ in range(depth):
            weight = gaussian(width, width, variance=sigma_w2 / width)
            bias = gaussian(width, variance=sigma_b2)
            pre = hidden @ weight.T + bias  # (batch, width)
            pre.retain_grad()
            pre_activations.append(pre)
            hidden = phi(pre)
        readout = gaussian(width, variance=1.0)
        (hidden @ readout).sum().backward()
        mean_square_pre += [float(p.detach().pow(2).mean()) / networks for p in pre_activations]
        mean_square_grad += [float(p.grad.pow(2).mean()) / networks for p in pre_activations]
    np.testing.assert_allclose(mean_square_pre, variance_profile(activation, sigma_w2, sigma_b2, depth), rtol=0.08)
    measured = np.sqrt(mean_square_grad / mean_square_grad[-1])
    np.testing.assert_allclose(measured, gradient_rms_profile(activation, sigma_w2, sigma_b2, depth), rtol=0.08)
