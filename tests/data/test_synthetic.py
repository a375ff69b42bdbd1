"""Synthetic sets: shapes, options, determinism from the seed, and no use of the global RNG."""

from __future__ import annotations

import pytest
import torch

from gradientflow.data import load_dataset
from gradientflow.errors import DataError

SYNTHETIC = ["synthetic_blobs", "synthetic_teacher"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_default_shapes_and_types(name: str) -> None:
    data = load_dataset(name)
    assert data.name == name
    assert data.train_x.shape == (2000, 64)
    assert data.test_x.shape == (500, 64)
    assert data.train_y.shape == (2000,) and data.test_y.shape == (500,)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.train_x.is_contiguous() and data.test_x.is_contiguous()
    assert data.input_shape == (64,)
    assert data.num_classes == 10
    assert "seed 0" in data.source


@pytest.mark.parametrize("name", SYNTHETIC)
def test_options_set_sizes(name: str) -> None:
    data = load_dataset(name, seed=1, n_train=30, n_test=12, n_features=5, num_classes=3)
    assert data.train_x.shape == (30, 5)
    assert data.test_x.shape == (12, 5)
    assert data.input_shape == (5,)
    assert data.num_classes == 3
    assert int(data.train_y.min()) >= 0 and int(data.train_y.max()) <= 2


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_gives_identical_tensors(name: str) -> None:
    first, second = load_dataset(name, seed=7, n_train=200), load_dataset(name, seed=7, n_train=200)
    for attribute in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, attribute), getattr(second, attribute))


@pytest.mark.parametrize("name", SYNTHETIC)
def test_other_seed_gives_other_data(name: str) -> None:
    first, second = load_dataset(name, seed=7, n_train=200), load_dataset(name, seed=8, n_train=200)
    assert not torch.equal(first.train_x, second.train_x)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_global_rng_is_untouched(name: str) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(5)
    torch.manual_seed(1234)
    load_dataset(name, seed=3, n_train=100)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_features_have_about_unit_variance(name: str) -> None:
    data = load_dataset(name, seed=2, n_train=4000)
    variance = float(data.train_x.var(dim=0).mean())
    assert 0.85 < variance < 1.15


def test_blobs_classes_are_balanced() -> None:
    data = load_dataset("synthetic_blobs", n_train=95, n_test=25, num_classes=10)
    counts = torch.bincount(torch.cat([data.train_y, data.test_y]), minlength=10)
    assert counts.tolist() == [12] * 10


def test_blobs_spread_controls_difficulty() -> None:
    def nearest_class_mean_accuracy(spread: float) -> float:
        data = load_dataset("synthetic_blobs", seed=0, spread=spread)
        means = torch.stack([data.train_x[data.train_y == c].mean(0) for c in range(10)])
        predicted = torch.cdist(data.test_x, means).argmin(1)
        return float((predicted == data.test_y).float().mean())

    easy, default, hard = (
        nearest_class_mean_accuracy(0.5),
        nearest_class_mean_accuracy(2.5),
        nearest_class_mean_accuracy(8.0),
    )
    assert easy > 0.99
    assert 0.75 < default < 0.99  # learnable, not trivial
    assert hard < default


def test_teacher_labels_use_every_class_without_one_dominating() -> None:
    data = load_dataset("synthetic_teacher", seed=5, n_train=5000)
    fractions = torch.bincount(data.train_y, minlength=10).float() / 5000
    assert float(fractions.min()) > 0.03
    assert float(fractions.max()) < 0.25


def test_teacher_labels_are_a_function_of_the_inputs() -> None:
    # Labels drawn at random would leave a nearest-neighbour rule at chance (about 0.1).
    data = load_dataset("synthetic_teacher", seed=0, n_train=3000, n_test=300, n_features=8)
    nearest = torch.cdist(data.test_x, data.train_x).argmin(1)
    accuracy = float((data.train_y[nearest] == data.test_y).float().mean())
    assert accuracy > 0.3


@pytest.mark.parametrize("name", SYNTHETIC)
def test_unknown_option_names_it_and_the_allowed_ones(name: str) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(name, n_trian=10, colour="red")
    message = str(caught.value)
    assert "'colour', 'n_trian'" in message
    assert name in message
    for allowed in ("n_train", "n_test", "n_features", "num_classes"):
        assert allowed in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"n_train": 0}, "n_train=0 must be a positive integer"),
        ({"n_test": 2.5}, "n_test=2.5 must be a positive integer"),
        ({"n_features": True}, "n_features=True must be a positive integer"),
        ({"num_classes": 1}, "num_classes=1 must be at least 2"),
        ({"spread": -1.0}, "spread=-1.0 must be a positive finite number"),
        ({"spread": float("nan")}, "spread=nan must be a positive finite number"),
    ],
)
def test_bad_option_values_are_named(options: dict, expected: str) -> None:
    with pytest.raises(DataError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        load_dataset("synthetic_blobs", **options)


def test_teacher_width_option() -> None:
    assert load_dataset("synthetic_teacher", teacher_width=4, n_train=10, n_test=5).n_train == 10
    with pytest.raises(DataError, match="teacher_width=0"):
        load_dataset("synthetic_teacher", teacher_width=0)
