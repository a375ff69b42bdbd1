"""models.inits: statistics of each init, weight_scale, bias_init, seeds, and no global RNG use."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradientflow.errors import ModelError
from gradientflow.models import INITS, build, fan_in, initialize
from gradientflow.spec import INIT_NAMES, NORM_NAMES, ModelSpec


def draw(init: str, shape: tuple[int, ...] = (1000, 1000), **spec: object) -> torch.Tensor:
    weight = torch.empty(shape)
    INITS[init](weight, ModelSpec(init=init, **spec), torch.Generator().manual_seed(0))
    return weight


def test_small_gaussian_std_is_init_std() -> None:
    weight = draw("small_gaussian", init_std=0.01)
    assert weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert abs(weight.mean().item()) < 0.001


def test_standard_uniform_bounds_are_one_over_root_fan_in() -> None:
    weight = draw("standard_uniform", (300, 400))
    bound = 1 / math.sqrt(400)
    assert weight.abs().max().item() <= bound
    assert weight.abs().max().item() == pytest.approx(bound, rel=1e-3)


def test_pytorch_default_matches_nn_linear_bounds() -> None:
    weight = draw("pytorch_default", (300, 400))
    assert weight.abs().max().item() == pytest.approx(1 / math.sqrt(400), rel=1e-3)


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [
        ("he_normal", math.sqrt(2 / 1000)),
        ("lecun_normal", math.sqrt(1 / 1000)),
        ("glorot_normal", math.sqrt(2 / (1000 + 1000))),
        ("glorot_uniform", math.sqrt(2 / (1000 + 1000))),  # U[-a, a], a = sqrt(6 / (in + out))
    ],
)
def test_scaled_inits_have_their_std(init: str, expected_std: float) -> None:
    assert draw(init).std().item() == pytest.approx(expected_std, rel=0.05)


def test_orthogonal_rows_are_orthonormal() -> None:
    weight = draw("orthogonal", (50, 80))
    torch.testing.assert_close(weight @ weight.T, torch.eye(50), atol=1e-5, rtol=0)


def test_fan_in_of_a_conv_weight_counts_the_kernel() -> None:
    assert fan_in(torch.empty(8, 3, 5, 5)) == 75 and fan_in(torch.empty(10, 20)) == 20
    weight = draw("lecun_normal", (64, 40, 5, 5))
    assert weight.std().item() == pytest.approx(1 / math.sqrt(1000), rel=0.05)


def test_build_applies_the_init_to_every_layer() -> None:
    model = build(ModelSpec(depth=1, width=1000, init="small_gaussian", init_std=0.02), (1000,), 10, seed=0)
    assert model.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.out.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_weight_scale_multiplies_weights_and_not_biases() -> None:
    spec = ModelSpec(depth=2, width=16, init="he_normal", bias_init=0.3)
    plain = build(spec, (8,), 3, seed=4)
    scaled = build(spec.model_copy(update={"weight_scale": 2.5}), (8,), 3, seed=4)
    for name in ("fc1", "fc2", "out"):
        torch.testing.assert_close(getattr(scaled, name).weight, 2.5 * getattr(plain, name).weight)
        assert torch.all(getattr(scaled, name).bias == 0.3)


def test_conv_weights_are_initialized_too() -> None:
    spec = ModelSpec(arch="cnn", channels=(64,), kernel_size=3, init="he_normal", bias_init=0.1)
    model = build(spec, (32, 8, 8), 2, seed=0)
    assert model.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    assert torch.all(model.conv1.bias == 0.1)


@pytest.mark.parametrize("init", INIT_NAMES)
def test_same_seed_same_weights_with_any_norm(init: str) -> None:
    base = ModelSpec(depth=3, width=20, init=init)
    plain = dict(build(base, (10,), 4, seed=7).named_parameters())
    for norm in NORM_NAMES:
        for position in ("before_activation", "after_activation"):
            spec = base.model_copy(update={"norm": norm, "norm_position": position})
            other = dict(build(spec, (10,), 4, seed=7).named_parameters())
            for name in ("fc1.weight", "fc2.weight", "fc3.weight", "out.weight"):
                assert torch.equal(plain[name], other[name]), (norm, position, name)


def test_seed_determines_the_weights() -> None:
    spec = ModelSpec(depth=2, width=16, norm="batch")
    first, again, other = (build(spec, (8,), 3, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


def test_global_rng_state_is_untouched() -> None:
    before = torch.random.get_rng_state()
    build(ModelSpec(depth=2, width=16, norm="batch"), (8,), 3, seed=0)
    build(ModelSpec(arch="cnn", channels=(4,)), (1, 4, 4), 3, seed=0)
    assert torch.equal(before, torch.random.get_rng_state())


def test_initialize_refuses_modules_it_cannot_initialize() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Embedding(4, 3))
    with pytest.raises(ModelError, match=r"'1' \(Embedding\)"):
        initialize(model, ModelSpec(), seed=0)
