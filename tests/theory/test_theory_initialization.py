from __future__ import annotations

import numpy as np
import pytest

from gradientflow.theory import INITIALIZATIONS, init_sigma_w2


@pytest.mark.parametrize(
    ("init", "kwargs", "expected"),
    [
        ("small_gaussian", {"fan_in": 784, "std": 0.01}, 0.0784),
        ("standard_uniform", {"fan_in": 300}, 1 / 3),
        ("glorot_uniform", {"fan_in": 256}, 1.0),
        ("glorot_normal", {"fan_in": 784, "fan_out": 256}, 2 * 784 / (784 + 256)),
        ("he_normal", {"fan_in": 100}, 2.0),
        ("lecun_normal", {"fan_in": 100}, 1.0),
    ],
)
def test_sigma_w2_of_each_initialization(init: str, kwargs: dict, expected: float) -> None:
    assert init_sigma_w2(init, **kwargs) == pytest.approx(expected)


def test_standard_uniform_matches_its_sampled_variance() -> None:
    fan_in = 400
    weight = np.random.default_rng(0).uniform(-(fan_in**-0.5), fan_in**-0.5, size=(400, fan_in))
    assert float(weight.var()) * fan_in == pytest.approx(init_sigma_w2("standard_uniform", fan_in), rel=0.02)


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="init='orthogonal'.*he_normal"):
        init_sigma_w2("orthogonal", 10)
    with pytest.raises(ValueError, match="std"):
        init_sigma_w2("small_gaussian", 10)
    assert set(INITIALIZATIONS) >= {"small_gaussian", "standard_uniform", "he_normal", "lecun_normal"}
